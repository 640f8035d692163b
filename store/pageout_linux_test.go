package store_test

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/breachd/breachd/store/storetest"
)

// tablePages returns the size of this process's mappings of dir's table
// files and how much of them is resident, from /proc/self/smaps.
func tablePages(t *testing.T, dir string) (size, rss int64) {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Skipf("no /proc/self/smaps: %v", err)
	}
	defer f.Close()
	abs, _ := filepath.Abs(dir)
	var inTable bool
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		fields := strings.Fields(line)
		switch {
		case len(fields) > 0 && strings.Contains(fields[0], "-") && !strings.HasSuffix(fields[0], ":"):
			// A mapping's header: start-end perms offset dev inode path.
			inTable = len(fields) >= 6 && strings.HasPrefix(fields[5], abs+"/") && strings.HasSuffix(fields[5], ".sst")
		case inTable && len(fields) == 3 && (fields[0] == "Size:" || fields[0] == "Rss:"):
			kb, err := strconv.ParseInt(fields[1], 10, 64)
			if err != nil {
				t.Fatalf("smaps line %q: %v", line, err)
			}
			if fields[0] == "Size:" {
				size += kb << 10
			} else {
				rss += kb << 10
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return size, rss
}

// A first import's bulk load pages out the tables it writes: they stay on
// disk, but not in the process's resident memory (at 100M digests, 5.2 GiB
// of RSS before this).
func TestBulkPagesOutTables(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, options(0))
	defer s.Close()
	a := storetest.Digests("a", 300_000)
	importAll(t, s, storetest.Breach("Alpha"), a, 10_000)
	size, rss := tablePages(t, dir)
	if size < 8<<20 {
		t.Fatalf("the bulk load's tables map %d bytes, want at least 8 MiB for the test to mean something", size)
	}
	if rss > size/8 {
		t.Fatalf("%d of %d bytes of table mappings resident after the bulk load, want at most an eighth", rss, size)
	}
	t.Logf("table mappings: %d KiB, resident %d KiB", size>>10, rss>>10)
	wantBreaches(t, s, a[:1000], "Alpha")
}
