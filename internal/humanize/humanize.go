// Package humanize formats numbers for people, in one style for every
// command: SI units (powers of 1000) with a space, as networkctl and
// "ip -h" print them ("999 B", "1.5 kB", "12.3 Mbit/s"). Rates are in
// bits per second, sizes in bytes.
// Below 1000 a value is a whole number, from 1000 on it has one decimal,
// and it never reads "1000 B" or "1000.0 kB": a value that rounds to 1000
// takes the next prefix instead ("1.0 kB", "1.0 MB").
package humanize

import (
	"fmt"
	"math"
)

// Bytes formats n bytes: "0 B", "999 B", "1.5 kB", "12.3 MB".
func Bytes(n uint64) string { return si(float64(n), "B") }

// BitRate formats a rate given in bytes per second as bits per second:
// "0 bit/s", "558 bit/s", "12.3 Mbit/s".
func BitRate(bytesPerSec float64) string { return si(bytesPerSec*8, "bit/s") }

// si formats v with an SI prefix: whole numbers below 1000, one decimal
// from 1 k on.
func si(v float64, unit string) string {
	const k = 1000
	if math.IsNaN(v) || v < 0 {
		v = 0
	}
	if math.Round(v) < k {
		return fmt.Sprintf("%.0f %s", v, unit)
	}
	exp := 0
	for exp == 0 || exp < 6 && (v >= k || math.Round(v*10)/10 >= k) {
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
