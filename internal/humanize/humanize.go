// Package humanize formats numbers for people, in one style for every
// command: SI units with a space, as systemctl and networkctl print them
// ("999 B", "1.5 kB", "12.3 Mbit/s").
package humanize

import "fmt"

// Bytes formats n bytes: "0 B", "999 B", "1.5 kB", "12.3 MB".
func Bytes(n uint64) string { return si(float64(n), "B") }

// BitRate formats a rate given in bytes per second as bits per second:
// "0 bit/s", "558 bit/s", "12.3 Mbit/s".
func BitRate(bytesPerSec float64) string { return si(bytesPerSec*8, "bit/s") }

func si(v float64, unit string) string {
	const k = 1000
	if v < k {
		return fmt.Sprintf("%.0f %s", v, unit)
	}
	exp := 0
	for v >= k && exp < 6 {
		v /= k
		exp++
	}
	return fmt.Sprintf("%.1f %c%s", v, "kMGTPE"[exp-1], unit)
}

// OnOff is "on" or "off".
func OnOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// YesNo is "yes" or "no".
func YesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// Sum adds the values of a map of counters (drops by reason).
func Sum(m map[string]uint64) uint64 {
	var n uint64
	for _, v := range m {
		n += v
	}
	return n
}
