package srcroute

import (
	"encoding/binary"
	"testing"

	"golang.org/x/sys/unix"
)

// ruleMsg builds a rule message's body: a fib_rule_hdr with table byte
// hdrTable, then the attributes given as (type, 4-byte value) pairs.
func ruleMsg(hdrTable byte, attrs ...[2]uint32) []byte {
	b := make([]byte, 12)
	b[0] = unix.AF_INET
	b[4] = hdrTable
	for _, a := range attrs {
		at := make([]byte, 8)
		binary.NativeEndian.PutUint16(at[0:], 8)
		binary.NativeEndian.PutUint16(at[2:], uint16(a[0]))
		binary.NativeEndian.PutUint32(at[4:], a[1])
		b = append(b, at...)
	}
	return b
}

func TestRuleTable(t *testing.T) {
	for _, tc := range []struct {
		name string
		msg  []byte
		want int
		ok   bool
	}{
		{"header only", ruleMsg(100), 100, true},
		{"FRA_TABLE overrides", ruleMsg(unix.RT_TABLE_COMPAT, [2]uint32{unix.FRA_PRIORITY, 32000}, [2]uint32{unix.FRA_TABLE, 1234567}), 1234567, true},
		{"other attributes", ruleMsg(254, [2]uint32{unix.FRA_PRIORITY, 32000}), 254, true},
		{"short", make([]byte, 11), 0, false},
		{"truncated attribute", ruleMsg(7, [2]uint32{unix.FRA_TABLE, 99})[:16], 7, true},
	} {
		got, ok := ruleTable(tc.msg)
		if got != tc.want || ok != tc.ok {
			t.Errorf("%s: ruleTable = %d, %v; want %d, %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
}

func TestConcernsRulesAndOwnTable(t *testing.T) {
	r := &Router{link: 5, table: 1000}
	for _, tc := range []struct {
		ev   Event
		want bool
	}{
		{Event{Kind: EventRule, Table: 1000}, true},
		{Event{Kind: EventRule, Table: 254}, false},
		{Event{Kind: EventRoute, LinkIndex: 5, Table: 1000}, true},
		{Event{Kind: EventRoute, LinkIndex: 5, Table: tableMain}, true},
		{Event{Kind: EventRoute, LinkIndex: 5, Table: 255}, false},
		{Event{Kind: EventRoute, LinkIndex: 6, Table: 1000}, false},
		{Event{Kind: EventAddr, LinkIndex: 5}, true},
		{Event{Kind: EventLink, LinkIndex: 6}, false},
	} {
		if got := r.concerns(tc.ev); got != tc.want {
			t.Errorf("concerns(%+v) = %v, want %v", tc.ev, got, tc.want)
		}
	}
}
