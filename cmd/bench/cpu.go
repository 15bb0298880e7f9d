package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/ordersaga/ordersaga/internal/stack"
)

// CPU groups, in the order the report prints them.
var cpuGroups = []string{"order", "payment", "inventory", "shipping", "postgres", "rabbitmq", "loadgen"}

// clock is how /proc counts CPU time: ticks per second.
type clock struct {
	hz      float64
	assumed bool // getconf failed and 100 Hz (the usual USER_HZ on Linux) was assumed
}

func clockTicks() clock {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if err == nil {
		if hz, err := strconv.Atoi(strings.TrimSpace(string(out))); err == nil && hz > 0 {
			return clock{hz: float64(hz)}
		}
	}
	return clock{hz: 100, assumed: true}
}

// procStat is what the bench reads from /proc/<pid>/stat, times in ticks.
type procStat struct {
	pid, ppid  int
	comm       string
	startTime  uint64 // ticks after boot, tells a reused pid apart
	ownTime    uint64 // utime+stime
	familyTime uint64 // ownTime and the cutime+cstime of its exited, reaped children
}

func readStat(path string) (procStat, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return procStat{}, err
	}
	// comm is in parentheses and may hold spaces or parentheses itself: split at the last ')'.
	open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || end < open {
		return procStat{}, fmt.Errorf("%s: unexpected format", path)
	}
	var st procStat
	st.pid, _ = strconv.Atoi(strings.TrimSpace(string(b[:open])))
	st.comm = string(b[open+1 : end])
	f := strings.Fields(string(b[end+1:]))
	// f[0] is field 3 (state) of proc(5).
	if len(f) < 20 {
		return procStat{}, fmt.Errorf("%s: %d fields", path, len(f))
	}
	num := func(field int) uint64 { v, _ := strconv.ParseUint(f[field-3], 10, 64); return v }
	st.ppid = int(num(4))
	st.startTime = num(22)
	st.ownTime = num(14) + num(15)                 // utime, stime
	st.familyTime = st.ownTime + num(16) + num(17) // cutime, cstime
	return st, nil
}

// allProcs reads every process of the machine; processes that end while it reads are skipped.
func allProcs() map[int]procStat {
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	procs := make(map[int]procStat, len(dirs))
	for _, d := range dirs {
		if st, err := readStat(filepath.Join(d, "stat")); err == nil {
			procs[st.pid] = st
		}
	}
	return procs
}

// treeTime is the CPU time of the process trees rooted at the processes named rootComm (whose
// parent is not named so): every live member's own time plus what its exited, reaped children
// used (cutime+cstime). A child's time moves into its parent's cutime when it is reaped, so the
// sum only grows, and PostgreSQL backends that come and go during a run are counted: the
// postmaster reaps them. Processes that left the tree without being reaped by it (reparented
// to init) are lost, which neither server does in normal operation.
func treeTime(procs map[int]procStat, rootComm string) uint64 {
	children := map[int][]int{}
	var roots []int
	for pid, p := range procs {
		children[p.ppid] = append(children[p.ppid], pid)
		if p.comm == rootComm && procs[p.ppid].comm != rootComm {
			roots = append(roots, pid)
		}
	}
	var sum uint64
	var walk func(int)
	walk = func(pid int) {
		sum += procs[pid].familyTime
		for _, c := range children[pid] {
			walk(c)
		}
	}
	for _, r := range roots {
		walk(r)
	}
	return sum
}

// cpuSample is every group's CPU time and the machine's, in ticks, at one moment.
type cpuSample struct {
	groups   map[string]uint64
	machine  machineTime
	services map[string][]procStat // the replicas sampled, to notice one that restarted
}

type machineTime struct {
	busy, total uint64 // total includes idle and iowait
}

func sampleCPU(s *stack.Stack) cpuSample {
	procs := allProcs()
	c := cpuSample{groups: map[string]uint64{}, services: map[string][]procStat{}}
	for _, svc := range stack.Services {
		for r := range s.Replicas() {
			if p, ok := procs[s.PID(svc, r)]; ok {
				c.groups[svc] += p.ownTime
				c.services[svc] = append(c.services[svc], p)
			}
		}
	}
	c.groups["postgres"] = treeTime(procs, "postgres")
	c.groups["rabbitmq"] = treeTime(procs, "beam.smp")
	if self, err := readStat("/proc/self/stat"); err == nil {
		c.groups["loadgen"] = self.ownTime
	}
	c.machine = readMachine()
	return c
}

// readMachine reads the first line of /proc/stat: user nice system idle iowait irq softirq
// steal guest guest_nice. guest time is already part of user time.
func readMachine() machineTime {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return machineTime{}
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return machineTime{}
	}
	var v [8]uint64
	for i := range v {
		v[i], _ = strconv.ParseUint(f[i+1], 10, 64)
	}
	idle := v[3] + v[4]
	var total uint64
	for _, x := range v {
		total += x
	}
	return machineTime{busy: total - idle, total: total}
}

// cpuUse is the CPU a scenario used, in seconds.
type cpuUse struct {
	groups    map[string]float64
	busy      float64 // the whole machine, every process included
	capacity  float64 // cores × seconds the machine had
	restarted []string
}

func cpuDelta(before, after cpuSample, hz float64) cpuUse {
	u := cpuUse{groups: map[string]float64{}}
	for _, g := range cpuGroups {
		u.groups[g] = float64(after.groups[g]-min(before.groups[g], after.groups[g])) / hz
	}
	for svc, ps := range before.services {
		if len(ps) != len(after.services[svc]) {
			u.restarted = append(u.restarted, svc)
			continue
		}
		for i, p := range ps {
			if q := after.services[svc][i]; q.pid != p.pid || q.startTime != p.startTime {
				u.restarted = append(u.restarted, svc)
				break
			}
		}
	}
	u.busy = float64(after.machine.busy-before.machine.busy) / hz
	u.capacity = float64(after.machine.total-before.machine.total) / hz
	return u
}
