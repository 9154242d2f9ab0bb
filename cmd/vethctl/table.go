package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// column is a table column: its title and whether its cells are aligned
// to the right (numbers).
type column struct {
	title string
	right bool
}

// table is a table like networkctl's: one space between columns, each as
// wide as its widest cell, no trailing spaces; an empty cell shows "-".
type table struct {
	cols []column
	rows [][]string
}

func newTable(cols ...column) *table { return &table{cols: cols} }

// add appends a row; it must have one cell per column.
func (t *table) add(cells ...string) {
	if len(cells) != len(t.cols) {
		panic(fmt.Sprintf("table: %d cells for %d columns", len(cells), len(t.cols)))
	}
	t.rows = append(t.rows, cells)
}

// write prints the rows, after the header if header is true.
func (t *table) write(w io.Writer, header bool) {
	width := make([]int, len(t.cols))
	rows := t.rows
	if header {
		titles := make([]string, len(t.cols))
		for i, c := range t.cols {
			titles[i] = c.title
		}
		rows = append([][]string{titles}, rows...)
	}
	for _, r := range rows {
		for i, c := range r {
			width[i] = max(width[i], utf8.RuneCountInString(cell(c)))
		}
	}
	var b strings.Builder
	for _, r := range rows {
		b.Reset()
		for i, c := range r {
			c = cell(c)
			pad := strings.Repeat(" ", width[i]-utf8.RuneCountInString(c))
			if i > 0 {
				b.WriteByte(' ')
			}
			if t.cols[i].right {
				b.WriteString(pad)
				b.WriteString(c)
			} else {
				b.WriteString(c)
				b.WriteString(pad)
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
}

func cell(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// writeJSON prints v as indented JSON and a newline.
func writeJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode JSON: %w", err)
	}
	b = append(b, '\n')
	_, err = w.Write(b)
	return err
}

// keyValues prints "Key: value" lines with the keys aligned to the right,
// as networkctl status does. A value with newlines continues under the
// first line's value.
func keyValues(w io.Writer, kv [][2]string) {
	width := 0
	for _, p := range kv {
		width = max(width, utf8.RuneCountInString(p[0]))
	}
	for _, p := range kv {
		indent := strings.Repeat(" ", width-utf8.RuneCountInString(p[0]))
		lines := strings.Split(p[1], "\n")
		fmt.Fprintf(w, "%s%s: %s\n", indent, p[0], lines[0])
		for _, l := range lines[1:] {
			fmt.Fprintf(w, "%s  %s\n", strings.Repeat(" ", width), l)
		}
	}
}

// humanRate formats a per-second count: one decimal below 100, none above.
func humanRate(v float64) string {
	if v < 100 {
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.0f", v)
}

// plural returns "1 bridge" or "N bridges".
func plural(n int, one, many string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, one)
	}
	return fmt.Sprintf("%d %s", n, many)
}
