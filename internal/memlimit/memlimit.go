package memlimit

import (
	"os"
	"runtime/debug"
)

// Transfer is the soft limit of a model push or pull: 20 MiB of the Go
// runtime's own memory (heap, stacks, runtime structures), not counting the
// binary's mapped pages, which are ~41 MB of cairn's RSS.
//
// Measured on a cold `cairn model push` of bench/models' 2 GiB model (4
// files of 512 MiB, chunk index on, docker-registry on loopback, VmHWM and
// RssAnon from bench/models/benchtool, user CPU from the same runs): the
// live heap peaks at ~9 MB (two or three files chunked while others
// upload); with GOGC's default alone the heap then grows to ~18 MB between
// collections, for RssAnon 24.6–25.0 MB and VmHWM 66.0–67.0 MB.
//
//	GOMEMLIMIT  VmHWM      RssAnon    user CPU
//	off         66.0–67.0  24.6–25.0  6.06–6.20 s
//	24MiB       61.6–63.6  20.3–21.5  6.12–6.13 s
//	20MiB       58.7–59.0  17.1–17.4  6.06–6.20 s
//	16MiB       57.7       15.9       9.87 s (the collector runs nearly
//	                                  all the time this close to the live heap)
//
// A pull stays at RssAnon ~13 MB (VmHWM ~55 MB) with or without a limit,
// and took the same CPU under 16MiB and 20MiB as without.
const Transfer = 20 << 20

// Set makes n bytes the runtime's soft memory limit, unless the GOMEMLIMIT
// environment variable is set (to a size or "off"), which the runtime has
// applied already and which wins. It returns the limit in effect.
func Set(n int64) int64 {
	if os.Getenv("GOMEMLIMIT") != "" {
		return debug.SetMemoryLimit(-1)
	}
	debug.SetMemoryLimit(n)
	return n
}
