package main

import (
	"path"
	"strings"

	"github.com/vethd/vethd/pkg/config"
)

// isPattern reports whether arg is a glob pattern rather than a name: it
// has one of path.Match's special characters "*", "?" or "[" (which
// networkctl treats the same way; no valid bridge name is refused for
// having them, but none in use has them).
func isPattern(arg string) bool { return strings.ContainsAny(arg, "*?[") }

// checkPatterns checks each argument: a pattern must be well-formed, a
// name valid (config.Validate). Both are usage errors (exit 2).
func checkPatterns(args []string) error {
	for _, a := range args {
		if isPattern(a) {
			if _, err := path.Match(a, ""); err != nil {
				return usageErr("invalid pattern %q: %v", a, err)
			}
			continue
		}
		if err := config.Validate(a); err != nil {
			return usageErr("%v", err)
		}
	}
	return nil
}

// matchAny reports whether name is one of the arguments or matches one
// of the patterns among them. No arguments match every name.
func matchAny(args []string, name string) bool {
	if len(args) == 0 {
		return true
	}
	for _, a := range args {
		if a == name {
			return true
		}
		if ok, _ := path.Match(a, name); ok && isPattern(a) {
			return true
		}
	}
	return false
}

// expand replaces the patterns among args by the names in known that
// they match (in known's order), keeps the names as they are, and drops
// repeats. A pattern that matches nothing is an error (exit 4), as a name
// that exists nowhere is.
func expand(args, known []string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	add := func(n string) {
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	for _, a := range args {
		if !isPattern(a) {
			add(a)
			continue
		}
		matched := false
		for _, n := range known {
			if ok, _ := path.Match(a, n); ok {
				add(n)
				matched = true
			}
		}
		if !matched {
			return nil, noSuch("no bridge matches %q", a)
		}
	}
	return out, nil
}
