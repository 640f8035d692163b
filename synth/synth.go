package synth

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"strings"
)

// Header is the first line of a generated dump.
const Header = "email,name,date_of_birth,encrypted_password"

// Options configure Generate.
type Options struct {
	Seed    uint64
	Records int // data rows, including dirty ones
	// DirtyPercent is the share of rows that are upper-cased, padded,
	// duplicated or malformed. Default 3; negative means none.
	DirtyPercent float64
	// Accounts, if set, receives the canonical email of every distinct valid
	// account, one per line, in first-seen order: the ground truth a
	// correct import must find.
	Accounts io.Writer
	// Domain overrides the long tail of domains, to make disjoint corpora:
	// with Domain "b.example" every address ends in a subdomain of it.
	Domain string
}

// Stats says what Generate wrote.
type Stats struct {
	Rows       int // data rows written
	Accounts   int // distinct valid accounts
	Duplicates int // rows repeating an earlier account (possibly re-cased)
	Malformed  int // rows an importer must reject
}

// 2011-era providers with rough shares, in percent; the rest is a long tail.
var providers = []struct {
	domain string
	share  float64
}{
	{"hotmail.com", 19}, {"yahoo.com", 17}, {"gmail.com", 13}, {"aol.com", 5},
	{"msn.com", 3}, {"live.com", 3}, {"hotmail.co.uk", 2.5}, {"yahoo.co.uk", 2},
	{"comcast.net", 1.8}, {"sbcglobal.net", 1.4}, {"btinternet.com", 1.2},
	{"mail.ru", 1.2}, {"gmx.de", 1.1}, {"yahoo.co.jp", 1}, {"verizon.net", 0.9},
	{"web.de", 0.8}, {"orange.fr", 0.8}, {"hotmail.fr", 0.8}, {"libero.it", 0.6},
	{"yandex.ru", 0.5}, {"bigpond.com", 0.5}, {"shaw.ca", 0.5}, {"free.fr", 0.4},
	{"att.net", 0.4}, {"cox.net", 0.4}, {"rocketmail.com", 0.3}, {"ymail.com", 0.3},
	{"me.com", 0.3}, {"mac.com", 0.3}, {"t-online.de", 0.3},
}

var firstNames = strings.Fields(`james john robert michael william david richard joseph thomas charles
christopher daniel matthew anthony mark donald steven paul andrew joshua kevin brian george edward
ryan jason jacob gary nicholas eric jonathan stephen larry justin scott brandon benjamin samuel
mary patricia jennifer linda elizabeth barbara susan jessica sarah karen nancy lisa betty margaret
sandra ashley kimberly emily donna michelle dorothy carol amanda melissa deborah stephanie rebecca
sharon laura cynthia kathleen amy angela shirley anna brenda pamela emma nicole helen samantha
yuki hiroshi kenji sakura pierre marie jean luc hans klaus anke lukas olga ivan dmitri sergei
luca giulia marco chiara sofia mateo carlos lucia diego`)

var lastNames = strings.Fields(`smith johnson williams brown jones garcia miller davis rodriguez
martinez hernandez lopez gonzalez wilson anderson thomas taylor moore jackson martin lee perez
thompson white harris sanchez clark ramirez lewis robinson walker young allen king wright scott
torres nguyen hill flores green adams nelson baker hall rivera campbell mitchell carter roberts
tanaka suzuki sato watanabe mueller schmidt schneider fischer weber dubois moreau laurent petit
rossi russo ferrari esposito bianchi ivanov smirnov kuznetsov popov novak kowalski`)

var handles = strings.Fields(`gamer sonic tails knuckles shadow dreamcast genesis megadrive segafan
ninja dragon tiger wolf blaze storm pixel retro arcade shinobi ecco streets rage outrun`)

var tailWords = strings.Fields(`acme north south east west blue red green star sun moon river lake
hill bay port city net web mail link tech data soft micro mega ultra prime first best home
family school uni college media online digital cyber global local`)

var tlds = []string{"com", "com", "com", "net", "org", "co.uk", "de", "fr", "jp", "ca", "com.au", "it", "nl", "ru", "es", "br"}

// Generate writes a dump of opts.Records rows. The same options always
// produce the same bytes.
func Generate(w io.Writer, opts Options) (Stats, error) {
	if opts.Records < 0 {
		return Stats{}, fmt.Errorf("records must not be negative")
	}
	dirty := opts.DirtyPercent
	if dirty == 0 {
		dirty = 3
	}
	if dirty < 0 {
		dirty = 0
	}
	g := &generator{rng: rand.New(rand.NewPCG(opts.Seed, 0x5e6a2011)), domain: opts.Domain,
		seen: make(map[uint64]struct{}, opts.Records)}
	g.cum = make([]float64, len(providers))
	total := 0.0
	for i, p := range providers {
		total += p.share
		g.cum[i] = total / 100
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	var acc *bufio.Writer
	if opts.Accounts != nil {
		acc = bufio.NewWriterSize(opts.Accounts, 1<<20)
	}
	var st Stats
	bw.WriteString(Header + "\n")
	var recent []string // accounts to duplicate from
	for st.Rows < opts.Records {
		st.Rows++
		roll := g.rng.Float64() * 100
		switch {
		case roll < dirty*0.12:
			st.Malformed++
			bw.WriteString(g.malformed())
			bw.WriteByte('\n')
			continue
		case roll < dirty*0.30 && len(recent) > 0:
			st.Duplicates++
			e := recent[g.rng.IntN(len(recent))]
			if g.rng.IntN(2) == 0 {
				e = strings.ToUpper(e)
			}
			g.writeRow(bw, e)
			continue
		}
		email := g.uniqueEmail()
		st.Accounts++
		if acc != nil {
			acc.WriteString(email)
			acc.WriteByte('\n')
		}
		if len(recent) < 4096 {
			recent = append(recent, email)
		} else {
			recent[g.rng.IntN(len(recent))] = email
		}
		shown := email
		switch {
		case roll < dirty*0.65:
			shown = mixCase(g.rng, email)
		case roll < dirty:
			shown = []string{" ", "  ", "\t"}[g.rng.IntN(3)] + email + []string{"", " ", "  "}[g.rng.IntN(3)]
		}
		g.writeRow(bw, shown)
	}
	if err := bw.Flush(); err != nil {
		return st, err
	}
	if acc != nil {
		if err := acc.Flush(); err != nil {
			return st, err
		}
	}
	return st, nil
}

type generator struct {
	rng    *rand.Rand
	cum    []float64
	domain string
	seen   map[uint64]struct{} // FNV-1a of emails issued, to keep accounts distinct
	first  string              // name of the row being written
	last   string
}

func (g *generator) uniqueEmail() string {
	for {
		e := g.email()
		h := fnv1a(e)
		if _, dup := g.seen[h]; dup {
			continue
		}
		g.seen[h] = struct{}{}
		return e
	}
}

func (g *generator) email() string {
	r := g.rng
	g.first, g.last = firstNames[r.IntN(len(firstNames))], lastNames[r.IntN(len(lastNames))]
	var local string
	switch r.IntN(8) {
	case 0:
		local = g.first + "." + g.last
	case 1:
		local = g.first + g.last
	case 2:
		local = g.first[:1] + g.last
	case 3:
		local = g.first + "_" + g.last
	case 4:
		local = handles[r.IntN(len(handles))] + strconv.Itoa(r.IntN(10000))
	case 5:
		local = g.first + strconv.Itoa(1950+r.IntN(50))
	case 6:
		local = g.first + "." + g.last + strconv.Itoa(r.IntN(100))
	default:
		local = g.last + g.first[:1] + strconv.Itoa(r.IntN(1000))
	}
	return local + "@" + g.pickDomain()
}

func (g *generator) pickDomain() string {
	r := g.rng
	if g.domain != "" {
		return tailWords[r.IntN(len(tailWords))] + strconv.Itoa(r.IntN(1000)) + "." + g.domain
	}
	x := r.Float64()
	for i, c := range g.cum {
		if x < c {
			return providers[i].domain
		}
	}
	// Long tail: Zipf-like, small ISPs, companies, schools and vanity domains.
	n := int(r.ExpFloat64() * 3000)
	w1 := tailWords[n%len(tailWords)]
	w2 := tailWords[(n/len(tailWords))%len(tailWords)]
	return w1 + w2 + strconv.Itoa(n/(len(tailWords)*len(tailWords))) + "." + tlds[n%len(tlds)]
}

func (g *generator) writeRow(w *bufio.Writer, email string) {
	r := g.rng
	if g.first == "" {
		g.first, g.last = firstNames[0], lastNames[0]
	}
	name := strings.ToUpper(g.first[:1]) + g.first[1:] + " " + strings.ToUpper(g.last[:1]) + g.last[1:]
	if strings.ContainsAny(email, ",\"") {
		email = `"` + strings.ReplaceAll(email, `"`, `""`) + `"`
	}
	var pw [12]byte
	for i := range pw {
		pw[i] = byte(r.Uint32())
	}
	fmt.Fprintf(w, "%s,%s,%04d-%02d-%02d,%s\n", email, name,
		1940+r.IntN(60), 1+r.IntN(12), 1+r.IntN(28), base64.StdEncoding.EncodeToString(pw[:]))
}

func (g *generator) malformed() string {
	r := g.rng
	switch r.IntN(6) {
	case 0:
		return g.first + g.last + ".hotmail.com,No At,1980-01-01,AAAA" // no @
	case 1:
		return ",Empty Email,1975-05-05,BBBB"
	case 2:
		return "\"broken@quote.com,Unclosed,1990-09-09,CCCC"
	case 3:
		return "justonefield"
	case 4:
		return "@nolocal.com,No Local,1966-06-06,DDDD"
	default:
		return "user@bad_domain,Bad Domain,1988-08-08,EEEE"
	}
}

// fnv1a is FNV-1a, 64-bit: deterministic, unlike maphash, so output does not
// depend on the process.
func fnv1a(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

func mixCase(r *rand.Rand, s string) string {
	b := []byte(s)
	if r.IntN(2) == 0 {
		return strings.ToUpper(s)
	}
	for i, c := range b {
		if c >= 'a' && c <= 'z' && r.IntN(3) == 0 {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}
