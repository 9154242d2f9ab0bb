# restate-failures.awk reads the output of `go test` (with or without -v)
# and prints, once it has read it all, every failing test's messages: the
# first line of each of its log lines (file.go:N: ...) and any panic, at
# most 40 per test, each cut at 300 characters. A failing test's last
# words (a journal dump, a daemon's log) can run to hundreds of lines, and
# what a CI report shows of a failing run is its end: scripts/test.sh
# prints this restatement last, so the reason for the failure is there.
function keep(line) {
	if (cur == "" || cnt[cur] >= 40)
		return
	sub(/^[ \t]+/, "", line)
	if (length(line) > 300)
		line = substr(line, 1, 300) "..."
	msgs[cur] = msgs[cur] "    " line "\n"
	cnt[cur]++
}
/^=== (RUN|CONT|NAME) / { cur = $3; next }
/^[ \t]*--- FAIL: / {
	name = $3
	if (!(name in failed)) {
		failed[name] = 1
		order[++n] = name
	}
	cur = name
	next
}
/^[ \t]*--- (PASS|SKIP): / { next }
/^FAIL\t/ { pkgs[++np] = $0; cur = ""; next }
/^(ok|PASS|FAIL)([ \t]|$)/ { cur = ""; next }
/^[ \t]+[^ \t]+\.go:[0-9]+: / { keep($0); next }
/^panic: / { keep($0); next }
END {
	if (n == 0 && np == 0)
		exit
	print ""
	print "== the failing tests' messages, restated (first lines only; the full output is above)"
	for (i = 1; i <= n; i++)
		printf "--- FAIL: %s\n%s", order[i], msgs[order[i]]
	for (i = 1; i <= np; i++)
		print pkgs[i]
}
