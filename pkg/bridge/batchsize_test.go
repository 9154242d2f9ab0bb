package bridge

import (
	"bufio"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestBatchSizer: batches of MTU frames keep BatchSize; large frames shrink
// the batch to the budget at once and release the slots beyond it that
// they filled; full batches of small frames grow it back, doubling; BIG TCP
// frames get one slot; heap buffers (no release) are never released.
func TestBatchSizer(t *testing.T) {
	var released []int
	s := newBatchSizer(func(i int) { released = append(released, i) })
	fill := func(n, size int) []int {
		f := make([]int, n)
		for i := range f {
			f[i] = size
		}
		return f
	}
	step := func(what string, fills []int, wantVlen int, wantReleased []int) {
		t.Helper()
		released = nil
		s.observe(fills)
		if s.vlen != wantVlen {
			t.Errorf("%s: vlen %d, want %d", what, s.vlen, wantVlen)
		}
		if !slices.Equal(released, wantReleased) {
			t.Errorf("%s: released slots %v, want %v", what, released, wantReleased)
		}
	}
	gso := VnetHdrLen + 65536 + 14
	want64 := batchBudget / gso // 5
	step("a full batch of MTU frames", fill(BatchSize, 1524), BatchSize, nil)
	step("a batch of 3 MTU frames", fill(3, 1524), BatchSize, nil)
	// 64 KiB frames in every slot: keep want64, release the rest.
	var rest []int
	for i := want64; i < BatchSize; i++ {
		rest = append(rest, i)
	}
	step("a full batch of 64 KiB frames", fill(BatchSize, gso), want64, rest)
	step("more 64 KiB frames", fill(want64, gso), want64, nil)
	step("a full batch of small frames", fill(want64, 1524), 2*want64, nil)
	step("a short batch of small frames", fill(3, 1524), 2*want64, nil)
	step("full again", fill(2*want64, 1524), 4*want64, nil)
	step("full again", fill(4*want64, 1524), BatchSize, nil)
	// Mixed: large frames only in slots 0 and 7: release 5..7.
	mixed := fill(BatchSize, 1524)
	mixed[0], mixed[7] = gso, gso
	step("a batch with two large frames", mixed, want64, []int{5, 6, 7})
	step("a BIG TCP frame", []int{BufSize}, 1, []int{1, 2, 3, 4})
	step("a full batch of one coalesced 20 KiB frame", []int{20 << 10}, 2, nil)
	step("a short batch of one small frame", []int{60}, 2, nil)
	step("a full batch of two small frames", []int{60, 60}, 4, nil)

	h := newBatchSizer(nil) // heap buffers: nothing to release, no crash
	h.observe(fill(BatchSize, gso))
	if h.vlen != want64 || h.hi != want64 {
		t.Errorf("heap buffers: vlen %d hi %d, want %d %d", h.vlen, h.hi, want64, want64)
	}
}

// TestReleaseBuffer: a mapped buffer that a frame filled is resident, and
// after releaseBuffer it is not (mincore), while its neighbours are kept.
func TestReleaseBuffer(t *testing.T) {
	bufs, mem := mapBuffers(3, BufSize)
	if mem == nil {
		t.Fatal("mapBuffers did not map")
	}
	defer unmapBuffers(mem)
	page := unix.Getpagesize()
	resident := func(b []byte) int {
		vec := make([]byte, (len(b)+page-1)/page)
		_, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafePointer(b)), uintptr(len(b)), uintptr(unsafePointer(vec)))
		if errno != 0 {
			t.Fatalf("mincore: %v", errno)
		}
		n := 0
		for _, v := range vec {
			n += int(v & 1)
		}
		return n
	}
	for _, b := range bufs {
		if uintptr(unsafePointer(b))%uintptr(page) != 0 {
			t.Fatalf("buffer at %p is not on a page", unsafePointer(b))
		}
		for i := 0; i < 65536; i += page {
			b[i] = 1
		}
	}
	if got := resident(bufs[1][:65536]); got != 65536/page {
		t.Fatalf("a filled buffer has %d resident pages, want %d", got, 65536/page)
	}
	releaseBuffer(bufs[1])
	if got := resident(bufs[1]); got != 0 {
		t.Errorf("after releaseBuffer %d pages are still resident", got)
	}
	if bufs[1][0] != 0 {
		t.Errorf("a released buffer reads %d, want the zero of a fresh page", bufs[1][0])
	}
	for _, i := range []int{0, 2} {
		if got := resident(bufs[i][:65536]); got != 65536/page {
			t.Errorf("buffer %d (not released) has %d resident pages, want %d", i, got, 65536/page)
		}
	}
}

// TestBuffersNoHugePages: the buffer mapping is advised MADV_NOHUGEPAGE
// (VmFlags "nh" in /proc/self/smaps), so that where transparent huge pages
// are "always" a frame in a slot does not make 2 MiB resident.
func TestBuffersNoHugePages(t *testing.T) {
	if _, err := os.Stat("/sys/kernel/mm/transparent_hugepage/enabled"); err != nil {
		t.Skip("this kernel has no transparent huge pages: nothing to advise")
	}
	_, mem := mapBuffers(2, BufSize)
	if mem == nil {
		t.Fatal("mapBuffers did not map")
	}
	defer unmapBuffers(mem)
	addr := uintptr(unsafePointer(mem))
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	in := false
	for sc.Scan() {
		line := sc.Text()
		var lo, hi uintptr
		if n, _ := fmt.Sscanf(line, "%x-%x ", &lo, &hi); n == 2 {
			in = lo <= addr && addr < hi
			continue
		}
		if in && strings.HasPrefix(line, "VmFlags:") {
			if !slices.Contains(strings.Fields(line)[1:], "nh") {
				t.Errorf("the buffer mapping's %s lacks nh (MADV_NOHUGEPAGE)", line)
			}
			return
		}
	}
	t.Fatalf("no mapping holds %#x in /proc/self/smaps", addr)
}
