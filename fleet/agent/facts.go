package agent

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cairn-dev/cairn/fleet"
)

// DetectFacts observes the machine: arch and OS, OS version
// (/etc/os-release VERSION_ID), kernel, memory, CPUs, hostname, visible
// accelerators (NVIDIA device nodes, Jetson device-tree model), the local
// time zone and the disk space free under root.
func DetectFacts(root string) fleet.Facts {
	f := fleet.Facts{Arch: runtime.GOARCH, OS: runtime.GOOS, CPUs: runtime.NumCPU()}
	f.Hostname, _ = os.Hostname()
	f.OSVersion = osRelease("/etc/os-release")["VERSION_ID"]
	var u syscall.Utsname
	if syscall.Uname(&u) == nil {
		f.Kernel = utsString(u.Release[:])
	}
	if m := meminfo(); m["MemTotal"] > 0 {
		f.Memory = m["MemTotal"]
	}
	f.Accelerators = accelerators()
	f.TimeZone = localZone()
	if root != "" {
		var st syscall.Statfs_t
		if syscall.Statfs(root, &st) == nil {
			f.DiskFree = int64(st.Bavail) * int64(st.Bsize)
		}
	}
	return f
}

// utsString reads a NUL-terminated utsname field (int8 on most Linux
// architectures, uint8 on arm and others).
func utsString[T int8 | uint8](b []T) string {
	var s []byte
	for _, c := range b {
		if c == 0 {
			break
		}
		s = append(s, byte(c))
	}
	return string(s)
}

func osRelease(path string) map[string]string {
	out := map[string]string{}
	b, err := os.ReadFile(path)
	if err != nil {
		return out
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if !ok || strings.HasPrefix(k, "#") {
			continue
		}
		out[k] = strings.Trim(v, `"'`)
	}
	return out
}

// meminfo reads /proc/meminfo in bytes.
func meminfo() map[string]int64 {
	out := map[string]int64{}
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return out
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fields := strings.Fields(v)
		if len(fields) == 0 {
			continue
		}
		n, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			continue
		}
		if len(fields) > 1 && fields[1] == "kB" {
			n *= 1024
		}
		out[k] = n
	}
	return out
}

func accelerators() []string {
	var acc []string
	if m, _ := filepath.Glob("/dev/nvidia[0-9]*"); len(m) > 0 {
		acc = append(acc, "nvidia-gpu")
	}
	if b, err := os.ReadFile("/proc/device-tree/model"); err == nil {
		model := strings.ToLower(string(bytes.TrimRight(b, "\x00\n")))
		switch {
		case strings.Contains(model, "orin"):
			acc = append(acc, "jetson-orin")
		case strings.Contains(model, "jetson"):
			acc = append(acc, "jetson")
		}
	}
	if m, _ := filepath.Glob("/dev/apex_[0-9]*"); len(m) > 0 {
		acc = append(acc, "coral-tpu")
	}
	return acc
}

// localZone is the machine's IANA zone: $TZ, /etc/timezone or the
// /etc/localtime link; "UTC" when unknown.
func localZone() string {
	if tz := os.Getenv("TZ"); tz != "" {
		return strings.TrimPrefix(tz, ":")
	}
	if b, err := os.ReadFile("/etc/timezone"); err == nil {
		if z := strings.TrimSpace(string(b)); z != "" {
			return z
		}
	}
	if l, err := os.Readlink("/etc/localtime"); err == nil {
		if _, z, ok := strings.Cut(l, "zoneinfo/"); ok {
			return z
		}
	}
	if z := time.Local.String(); z != "Local" && z != "" {
		return z
	}
	return "UTC"
}

// LoadFactsFile reads fact overrides from a JSON file with
// the fields of fleet.Facts; fields it sets replace detected ones.
func LoadFactsFile(path string, into *fleet.Facts) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read facts file: %w", err)
	}
	var over fleet.Facts
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&over); err != nil {
		return fmt.Errorf("read facts file %s: %w", path, err)
	}
	mergeFacts(into, over)
	return nil
}

func mergeFacts(f *fleet.Facts, o fleet.Facts) {
	if o.Arch != "" {
		f.Arch = o.Arch
	}
	if o.OS != "" {
		f.OS = o.OS
	}
	if o.OSVersion != "" {
		f.OSVersion = o.OSVersion
	}
	if o.Kernel != "" {
		f.Kernel = o.Kernel
	}
	if o.Memory != 0 {
		f.Memory = o.Memory
	}
	if o.CPUs != 0 {
		f.CPUs = o.CPUs
	}
	if o.Accelerators != nil {
		f.Accelerators = o.Accelerators
	}
	if o.Hostname != "" {
		f.Hostname = o.Hostname
	}
	if o.TimeZone != "" {
		f.TimeZone = o.TimeZone
	}
	if o.DiskFree != 0 {
		f.DiskFree = o.DiskFree
	}
}
