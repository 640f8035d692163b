package porttest_test

import (
	"fmt"
	"net"
	"testing"

	"github.com/breachd/breachd/internal/porttest"
)

// TestReserve: a reserved port lies below the ephemeral range and can be
// bound at once.
func TestReserve(t *testing.T) {
	for range 20 {
		p, err := porttest.Reserve()
		if err != nil {
			t.Fatal(err)
		}
		if p < 20000 || p >= 32000 {
			t.Fatalf("port %d is outside 20000..31999", p)
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			t.Fatalf("binding the reserved port: %v", err)
		}
		l.Close()
	}
}
