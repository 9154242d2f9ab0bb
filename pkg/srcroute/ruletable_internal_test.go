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
	return withAttrs(b, attrs...)
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

// withAttrs appends (type, 4-byte value) attributes to a message body.
func withAttrs(b []byte, attrs ...[2]uint32) []byte {
	for _, a := range attrs {
		at := make([]byte, 8)
		binary.NativeEndian.PutUint16(at[0:], 8)
		binary.NativeEndian.PutUint16(at[2:], uint16(a[0]))
		binary.NativeEndian.PutUint32(at[4:], a[1])
		b = append(b, at...)
	}
	return b
}

// TestEventOf: the one subscription socket's messages become the Events
// the Router acts on — an address's link, a route's link (RTA_OIF) and
// table (rtm_table, RTA_TABLE over it), a link's index, a rule's table —
// and anything else, or too short, is no Event.
func TestEventOf(t *testing.T) {
	ifaddr := func(index uint32) []byte {
		b := make([]byte, unix.SizeofIfAddrmsg)
		b[0] = unix.AF_INET6
		binary.NativeEndian.PutUint32(b[4:], index)
		return b
	}
	rtmsg := func(table byte) []byte {
		b := make([]byte, unix.SizeofRtMsg)
		b[0], b[4] = unix.AF_INET, table
		return b
	}
	ifinfo := func(index int32) []byte {
		b := make([]byte, unix.SizeofIfInfomsg)
		binary.NativeEndian.PutUint32(b[4:], uint32(index))
		return b
	}
	for _, c := range []struct {
		name string
		typ  uint16
		body []byte
		want Event
		ok   bool
	}{
		{"new address", unix.RTM_NEWADDR, ifaddr(7), Event{Kind: EventAddr, LinkIndex: 7}, true},
		{"deleted address", unix.RTM_DELADDR, withAttrs(ifaddr(9), [2]uint32{unix.IFA_FLAGS, 0}), Event{Kind: EventAddr, LinkIndex: 9}, true},
		{"short address", unix.RTM_NEWADDR, ifaddr(7)[:5], Event{}, false},
		{"route, table in the header", unix.RTM_NEWROUTE, withAttrs(rtmsg(254), [2]uint32{unix.RTA_OIF, 3}), Event{Kind: EventRoute, LinkIndex: 3, Table: 254}, true},
		{"route, RTA_TABLE over the header", unix.RTM_DELROUTE, withAttrs(rtmsg(252), [2]uint32{unix.RTA_TABLE, 1000}, [2]uint32{unix.RTA_OIF, 12}), Event{Kind: EventRoute, LinkIndex: 12, Table: 1000}, true},
		{"route without a link (multipath)", unix.RTM_NEWROUTE, withAttrs(rtmsg(254), [2]uint32{unix.RTA_PRIORITY, 100}), Event{Kind: EventRoute, Table: 254}, true},
		{"route with a broken attribute", unix.RTM_NEWROUTE, append(rtmsg(254), 2, 0, 4, 0), Event{Kind: EventRoute, Table: 254}, true},
		{"short route", unix.RTM_NEWROUTE, rtmsg(254)[:8], Event{}, false},
		{"new link", unix.RTM_NEWLINK, ifinfo(42), Event{Kind: EventLink, LinkIndex: 42}, true},
		{"deleted link", unix.RTM_DELLINK, ifinfo(43), Event{Kind: EventLink, LinkIndex: 43}, true},
		{"rule", unix.RTM_NEWRULE, ruleMsg(0, [2]uint32{unix.FRA_TABLE, 1001}), Event{Kind: EventRule, Table: 1001}, true},
		{"neighbour (not subscribed)", unix.RTM_NEWNEIGH, make([]byte, 32), Event{}, false},
	} {
		got, ok := eventOf(c.typ, c.body)
		if ok != c.ok || got != c.want {
			t.Errorf("%s: got %+v, %v; want %+v, %v", c.name, got, ok, c.want, c.ok)
		}
	}
}
