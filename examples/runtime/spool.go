package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// spoolLines is how many inputs a spool file holds at most before it is
// written out (a flush also writes what is there).
const spoolLines = 1000

// spool keeps the inputs the runtime scored and writes them as JSON lines
// ({"rms": 0.41, "kurtosis": 3.1, …} per row) into dir, the folder the
// agent gives as CAIRN_FEEDBACK_DIR: each file written under a dot name
// and renamed to *.jsonl once complete, as the agent's feedback upload
// expects.
type spool struct {
	dir   string
	mu    sync.Mutex
	buf   bytes.Buffer
	lines int
	seq   int
}

func newSpool(dir string) (*spool, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("feedback spool: %w", err)
	}
	return &spool{dir: dir}, nil
}

// add spools rows of the named features; a full file is written out.
func (sp *spool) add(features []string, rows [][]float64) error {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	for _, row := range rows {
		in := make(map[string]float64, len(features))
		for j, f := range features {
			if j < len(row) {
				in[f] = row[j]
			}
		}
		b, err := json.Marshal(in)
		if err != nil {
			continue // a NaN or Inf input: nothing JSON can carry
		}
		sp.buf.Write(b)
		sp.buf.WriteByte('\n')
		sp.lines++
		if sp.lines >= spoolLines {
			if err := sp.flushLocked(); err != nil {
				return err
			}
		}
	}
	return nil
}

// flush writes out what is spooled, if anything.
func (sp *spool) flush() error {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	return sp.flushLocked()
}

func (sp *spool) flushLocked() error {
	if sp.lines == 0 {
		return nil
	}
	sp.seq++
	name := fmt.Sprintf("%d-%06d.jsonl", time.Now().UnixNano(), sp.seq)
	tmp := filepath.Join(sp.dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, sp.buf.Bytes(), 0o644); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("feedback spool: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(sp.dir, name)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("feedback spool: %w", err)
	}
	sp.buf.Reset()
	sp.lines = 0
	return nil
}
