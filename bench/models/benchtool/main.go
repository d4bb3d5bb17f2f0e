// Command benchtool helps bench/models/run.sh: `gen` writes a deterministic
// random model, `run` runs a command and prints its wall time and peak RSS.
package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "benchtool:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: benchtool gen DIR FILES MIB | benchtool run [-stdout FILE] CMD ARGS…")
	}
	switch args[0] {
	case "gen":
		if len(args) != 4 {
			return fmt.Errorf("usage: benchtool gen DIR FILES MIB")
		}
		files, err1 := strconv.Atoi(args[2])
		mib, err2 := strconv.ParseInt(args[3], 10, 64)
		if err1 != nil || err2 != nil || files < 1 {
			return fmt.Errorf("gen: FILES and MIB must be numbers")
		}
		return gen(args[1], files, mib<<20)
	case "run":
		return timeCmd(args[1:])
	}
	return fmt.Errorf("unknown verb %q", args[0])
}

// gen writes files model-0000i-of-0000n.safetensors totalling size bytes.
func gen(dir string, files int, size int64) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for i := 1; i <= files; i++ {
		name := filepath.Join(dir, fmt.Sprintf("model-%05d-of-%05d.safetensors", i, files))
		f, err := os.Create(name)
		if err != nil {
			return err
		}
		w := bufio.NewWriterSize(f, 1<<20)
		if _, err := io.CopyN(w, rand.NewChaCha8([32]byte{byte(i)}), size/int64(files)); err != nil {
			return err
		}
		if err := w.Flush(); err != nil {
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
	}
	return os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"architectures":["Bench"]}`), 0o644)
}

// timeCmd runs a command, discarding its output unless it fails (or keeping
// its stdout in a file with -stdout FILE), and prints
// "SECONDS MAXRSS_KIB PEAK_ANON_KIB" (and the CPU times on stderr).
// MAXRSS counts the binary's pages mapped from disk too; PEAK_ANON
// (RssAnon sampled every 5 ms) is the process's own memory.
func timeCmd(argv []string) error {
	var stdoutFile string
	if len(argv) > 1 && argv[0] == "-stdout" {
		stdoutFile, argv = argv[1], argv[2:]
	}
	if len(argv) > 0 && argv[0] == "--" {
		argv = argv[1:]
	}
	if len(argv) == 0 {
		return fmt.Errorf("run: no command")
	}
	var out bytes.Buffer
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if stdoutFile != "" {
		f, err := os.Create(stdoutFile)
		if err != nil {
			return err
		}
		defer f.Close()
		cmd.Stdout = f
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return err
	}
	anon := make(chan int64)
	stop := make(chan struct{})
	go func() { anon <- peakAnon(cmd.Process.Pid, stop) }()
	err := cmd.Wait()
	elapsed := time.Since(start)
	close(stop)
	peak := <-anon
	if err != nil {
		os.Stderr.Write(out.Bytes())
		return fmt.Errorf("%v: %w", argv, err)
	}
	var maxrss int64
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		maxrss = ru.Maxrss // KiB on Linux
	}
	fmt.Printf("%.3f %d %d\n", elapsed.Seconds(), maxrss, peak)
	fmt.Fprintf(os.Stderr, "user %.2fs sys %.2fs\n", cmd.ProcessState.UserTime().Seconds(), cmd.ProcessState.SystemTime().Seconds())
	return nil
}

// peakAnon samples RssAnon of pid until stop and returns the largest, in KiB.
func peakAnon(pid int, stop <-chan struct{}) int64 {
	var peak int64
	file := fmt.Sprintf("/proc/%d/status", pid)
	for {
		if b, err := os.ReadFile(file); err == nil {
			for _, line := range bytes.Split(b, []byte("\n")) {
				if v, ok := bytes.CutPrefix(line, []byte("RssAnon:")); ok {
					f := bytes.Fields(v)
					if len(f) > 0 {
						if n, err := strconv.ParseInt(string(f[0]), 10, 64); err == nil && n > peak {
							peak = n
						}
					}
				}
			}
		}
		select {
		case <-stop:
			return peak
		case <-time.After(5 * time.Millisecond):
		}
	}
}
