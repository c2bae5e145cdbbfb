package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTick is USER_HZ, the unit of utime and stime in /proc/PID/stat. Linux fixes it at 100 for
// every architecture Go runs this harness on.
const clockTick = 10 * time.Millisecond

// cpuTime returns the user plus system CPU time the process has used, all threads included.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseStatCPU(b)
}

// parseStatCPU reads utime and stime (fields 14 and 15) from a /proc/PID/stat line. The command
// name (field 2) is in parentheses and may hold spaces and parentheses, so fields are counted from
// the last ')'.
func parseStatCPU(b []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("malformed /proc/PID/stat: no ')'")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state), so field n is f[n-3].
	if len(f) < 13 {
		return 0, errors.New("malformed /proc/PID/stat: too few fields")
	}
	utime, err1 := strconv.ParseInt(f[14-3], 10, 64)
	stime, err2 := strconv.ParseInt(f[15-3], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("malformed /proc/PID/stat: utime %q stime %q", f[14-3], f[15-3])
	}
	return time.Duration(utime+stime) * clockTick, nil
}

// memory is a process's resident set now and at its peak (since the last resetPeakRSS), in KiB.
type memory struct{ rssKiB, hwmKiB int64 }

func processMemory(pid int) (memory, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return memory{}, err
	}
	return parseStatus(b)
}

// parseStatus reads VmRSS and VmHWM from /proc/PID/status.
func parseStatus(b []byte) (memory, error) {
	var m memory
	var found int
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			return m, fmt.Errorf("malformed /proc/PID/status line %q", line)
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return m, fmt.Errorf("malformed /proc/PID/status line %q", line)
		}
		if k == "VmRSS" {
			m.rssKiB = n
		} else {
			m.hwmKiB = n
		}
		found++
	}
	if found != 2 {
		return m, errors.New("/proc/PID/status has no VmRSS or VmHWM")
	}
	return m, nil
}

// resetPeakRSS makes VmHWM start again from the current RSS (Linux ≥ 4.0, clear_refs value 5), so
// the peak of one workload can be read afterwards.
func resetPeakRSS(pid int) error {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
}

// openFDs counts the process's open file descriptors.
func openFDs(pid int) (int, error) {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return len(ents), err
}

// cpuSampler records a process's CPU time every interval, so the CPU rate of a steady window of a
// run can be separated from its start-up (connecting clients) and its end.
type cpuSampler struct {
	pid     int
	samples []cpuSample
	stop    chan struct{}
	done    chan struct{}
}

type cpuSample struct {
	at  time.Time
	cpu time.Duration
}

func startSampler(pid int, every time.Duration) *cpuSampler {
	s := &cpuSampler{pid: pid, stop: make(chan struct{}), done: make(chan struct{})}
	s.sample()
	go func() {
		defer close(s.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-s.stop:
				s.sample()
				return
			case <-t.C:
				s.sample()
			}
		}
	}()
	return s
}

func (s *cpuSampler) sample() {
	if c, err := cpuTime(s.pid); err == nil {
		s.samples = append(s.samples, cpuSample{time.Now(), c})
	}
}

// finish stops sampling and returns the samples.
func (s *cpuSampler) finish() []cpuSample {
	close(s.stop)
	<-s.done
	return s.samples
}

// total is the CPU time used between the first and the last sample.
func total(samples []cpuSample) time.Duration {
	if len(samples) < 2 {
		return 0
	}
	return samples[len(samples)-1].cpu - samples[0].cpu
}

// rateIn returns the CPU time per second of wall time between the first sample at or after from
// and the last sample at or before to, and the length of that window.
func rateIn(samples []cpuSample, from, to time.Time) (float64, time.Duration) {
	first, last := -1, -1
	for i, s := range samples {
		if first < 0 && !s.at.Before(from) {
			first = i
		}
		if !s.at.After(to) {
			last = i
		}
	}
	if first < 0 || last <= first {
		return 0, 0
	}
	wall := samples[last].at.Sub(samples[first].at)
	return float64(samples[last].cpu-samples[first].cpu) / float64(wall), wall
}
