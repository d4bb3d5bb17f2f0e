package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"
	"sigs.k8s.io/yaml"

	"github.com/cairn-dev/cairn/internal/output"
	"github.com/cairn-dev/cairn/registry/blobs"
	"github.com/cairn-dev/cairn/registry/datasets"
)

func newDataCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "data",
		Short: "Version datasets in content-addressed object storage (push, pull, ls, diff, profile)",
		Long: "Datasets are versioned by content: a version is a sorted list of entries whose sha256 is its digest;\n" +
			"contents live as blobs in a store: file:///path or s3://bucket/prefix?endpoint=host:port&insecure=1\n" +
			"(credentials from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY). --store defaults to $CAIRN_STORE.",
	}
	cmd.AddCommand(newDataPushCmd(), newDataPullCmd(), newDataLsCmd(), newDataDiffCmd(), newDataProfileCmd())
	return cmd
}

// dataStoreFlag adds --store (default $CAIRN_STORE) and returns a pointer to it.
func dataStoreFlag(cmd *cobra.Command) *string {
	s := cmd.Flags().String("store", os.Getenv("CAIRN_STORE"), "blob store URL: file:///path or s3://bucket/prefix?endpoint=host:port&insecure=1 (default $CAIRN_STORE)")
	return s
}

func dataOpenStore(cmd *cobra.Command, url string) (blobs.Store, error) {
	if url == "" {
		return nil, errors.New("no store: pass --store URL or set CAIRN_STORE")
	}
	return blobs.Open(cmd.Context(), url)
}

// dataProgressHooks draws a byte progress bar on stderr when it is a terminal.
func dataProgressHooks(cmd *cobra.Command, verb string) (datasets.Progress, func()) {
	if !term.IsTerminal(int(os.Stderr.Fd())) {
		return datasets.Progress{}, func() {}
	}
	var bar *progressbar.ProgressBar
	return datasets.Progress{
			Start: func(files int, n int64) {
				bar = progressbar.NewOptions64(n,
					progressbar.OptionSetWriter(cmd.ErrOrStderr()),
					progressbar.OptionSetDescription(fmt.Sprintf("%s %d files", verb, files)),
					progressbar.OptionShowBytes(true),
					progressbar.OptionThrottle(100_000_000),
					progressbar.OptionClearOnFinish(),
				)
			},
			Bytes: func(n int64) {
				if bar != nil {
					bar.Add64(n)
				}
			},
		}, func() {
			if bar != nil {
				bar.Finish()
			}
		}
}

func newDataPushCmd() *cobra.Command {
	var format, legacyFormat string
	var profile, noCache bool
	cmd := &cobra.Command{
		Use:   "push PATH --store URL [--format text|json]",
		Short: "Version a file or folder; print its digest sha256:… as the last line",
		Long: "Push a file or folder: large files are split by content-defined chunking, blobs already in the store\n" +
			"are not uploaded again. Prints a summary and the version digest as the last stdout line; with --format json\n" +
			"(or -o json) one object {digest, files, bytes, uploadedBytes, reusedBytes}. --profile also stores per-column\n" +
			"statistics of the CSV files (read them with `cairn data profile`). A cache under the user cache folder lets an\n" +
			"unchanged re-push skip reading unchanged files (--no-cache: read and check everything).",
		Args: cobra.ExactArgs(1),
	}
	store := dataStoreFlag(cmd)
	cmd.Flags().StringVar(&format, "format", "", "text (a summary and the digest) or json (default text)")
	cmd.Flags().StringVarP(&legacyFormat, "output", "o", "", "the same as --format: json or yaml")
	cmd.Flags().BoolVar(&noCache, "no-cache", false, "read every file and ask the store about every blob")
	cmd.Flags().BoolVar(&profile, "profile", false, "also store a profile of the CSV files (count, mean, variance, min, max, histogram per numeric column)")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		f, err := dataFormat(format, legacyFormat)
		if err != nil {
			return err
		}
		s, err := dataOpenStore(cmd, *store)
		if err != nil {
			return err
		}
		prog, done := dataProgressHooks(cmd, "push")
		opts := datasets.PushOptions{Profile: profile, Progress: prog}
		if dir, err := os.UserCacheDir(); err == nil && !noCache {
			opts.CacheDir, opts.StoreID = filepath.Join(dir, "cairn"), *store
		}
		res, err := datasets.Push(cmd.Context(), s, args[0], opts)
		done()
		if err != nil {
			return err
		}
		if f != "text" {
			return output.Print(cmd.OutOrStdout(), f, res)
		}
		fmt.Fprintf(cmd.OutOrStdout(), "%d files, %s: %s uploaded, %s reused\n%s\n", res.Files,
			output.Bytes(res.Bytes), output.Bytes(res.UploadedBytes), output.Bytes(res.ReusedBytes), res.Digest)
		return nil
	}
	return cmd
}

// dataFormat is the output format of data push and pull: --format (text,
// json or yaml), else push's older -o (json, yaml; "" and table are text).
func dataFormat(format, legacy string) (string, error) {
	switch {
	case format != "" && legacy != "" && format != legacy:
		return "", fmt.Errorf("--format %s and -o %s: give one", format, legacy)
	case format == "":
		format = legacy
	}
	switch format {
	case "", "text", output.Table:
		return "text", nil
	case output.JSON, output.YAML:
		return format, nil
	}
	return "", fmt.Errorf("unknown output format %q: want text or json", format)
}

// DataPullResult is what `cairn data pull --format json` prints.
type DataPullResult struct {
	Digest string `json:"digest" yaml:"digest"`
	Dir    string `json:"dir" yaml:"dir"`
	Files  int    `json:"files" yaml:"files"`
	Bytes  int64  `json:"bytes" yaml:"bytes"`
}

func newDataPullCmd() *cobra.Command {
	var dir, format string
	cmd := &cobra.Command{
		Use:   "pull DIGEST --store URL -o DIR [--format text|json]",
		Short: "Restore a version into DIR, verifying every byte",
		Long: "Restore a version into DIR, verifying every byte. Prints a summary line, or with --format json one\n" +
			"object {digest, dir, files, bytes} (-o is the folder here, not the format).",
		Args: cobra.ExactArgs(1),
	}
	store := dataStoreFlag(cmd)
	topts := dataTreeFlags(cmd)
	cmd.Flags().StringVarP(&dir, "output", "o", "", "folder to restore into (created when missing)")
	cmd.Flags().StringVar(&format, "format", "text", "text (a summary line) or json")
	cmd.MarkFlagRequired("output")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		f, err := dataFormat(format, "")
		if err != nil {
			return err
		}
		s, err := dataOpenStore(cmd, *store)
		if err != nil {
			return err
		}
		res := DataPullResult{Digest: args[0], Dir: dir}
		prog, done := dataProgressHooks(cmd, "pull")
		start := prog.Start
		prog.Start = func(files int, n int64) {
			res.Files, res.Bytes = files, n
			if start != nil {
				start(files, n)
			}
		}
		err = datasets.Pull(cmd.Context(), s, args[0], dir, datasets.PullOptions{Progress: prog, Tree: *topts})
		done()
		if err != nil {
			return err
		}
		if f != "text" {
			return output.Print(cmd.OutOrStdout(), f, res)
		}
		fmt.Fprintf(cmd.OutOrStdout(), "pulled %s: %d files, %s into %s\n", res.Digest, res.Files, output.Bytes(res.Bytes), dir)
		return nil
	}
	return cmd
}

// dataTreeFlags adds --max-entries and returns the tree options.
func dataTreeFlags(cmd *cobra.Command) *datasets.TreeOptions {
	o := &datasets.TreeOptions{}
	cmd.Flags().IntVar(&o.MaxEntries, "max-entries", datasets.DefaultMaxEntries, "refuse a version with more entries than this")
	return o
}

func newDataLsCmd() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "ls DIGEST --store URL",
		Short: "List the entries of a version (streamed: memory does not grow with the tree)",
		Args:  cobra.ExactArgs(1),
	}
	store := dataStoreFlag(cmd)
	topts := dataTreeFlags(cmd)
	cmd.Flags().StringVarP(&format, "output", "o", output.Table, "output format: table, json or yaml")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		s, err := dataOpenStore(cmd, *store)
		if err != nil {
			return err
		}
		t, err := datasets.OpenTree(cmd.Context(), s, args[0], *topts)
		if err != nil {
			return err
		}
		defer t.Close()
		p, err := newStreamPrinter(cmd.OutOrStdout(), format, "entries", []string{"type", "mode", "size", "digest", "path"},
			`{"entries":[`, `],"version":1}`, "version: 1\n")
		if err != nil {
			return err
		}
		if err := t.Walk(func(e datasets.Entry) error { return p.add(e, datasets.EntryRow(e)) }); err != nil {
			return err
		}
		return p.close()
	}
	return cmd
}

func newDataDiffCmd() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "diff A B --store URL",
		Short: "Paths added, removed and changed from version A to version B, with sizes (streamed)",
		Args:  cobra.ExactArgs(2),
	}
	store := dataStoreFlag(cmd)
	topts := dataTreeFlags(cmd)
	cmd.Flags().StringVarP(&format, "output", "o", output.Table, "output format: table, json or yaml")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		s, err := dataOpenStore(cmd, *store)
		if err != nil {
			return err
		}
		a, err := datasets.OpenTree(cmd.Context(), s, args[0], *topts)
		if err != nil {
			return err
		}
		defer a.Close()
		b, err := datasets.OpenTree(cmd.Context(), s, args[1], *topts)
		if err != nil {
			return err
		}
		defer b.Close()
		p, err := newStreamPrinter(cmd.OutOrStdout(), format, "", []string{"change", "path", "type", "old size", "new size"}, "[", "]", "")
		if err != nil {
			return err
		}
		if err := datasets.DiffFiles(a, b, func(c datasets.Change) error { return p.add(c, datasets.ChangeRow(c)) }); err != nil {
			return err
		}
		return p.close()
	}
	return cmd
}

// streamPrinter prints a long list as it comes: a table in aligned blocks
// of streamBlock rows, a JSON array (inside head and tail), or YAML items
// (under key, then yamlTail).
type streamPrinter struct {
	w                    io.Writer
	format, key          string
	header               []string
	head, tail, yamlTail string
	rows                 [][]string
	n                    int
}

const streamBlock = 4096

func newStreamPrinter(w io.Writer, format, key string, header []string, head, tail, yamlTail string) (*streamPrinter, error) {
	switch format {
	case output.Table, "", output.JSON, output.YAML:
	default:
		return nil, fmt.Errorf("unknown output format %q: want table, json or yaml", format)
	}
	return &streamPrinter{w: bufio.NewWriterSize(w, 1<<16), format: format, key: key, header: header,
		head: head, tail: tail, yamlTail: yamlTail}, nil
}

func (p *streamPrinter) add(v any, row []string) error {
	defer func() { p.n++ }()
	switch p.format {
	case output.JSON:
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		sep := ",\n  "
		if p.n == 0 {
			sep = p.head + "\n  "
		}
		_, err = fmt.Fprintf(p.w, "%s%s", sep, b)
		return err
	case output.YAML:
		if p.n == 0 && p.key != "" {
			fmt.Fprintf(p.w, "%s:\n", p.key)
		}
		b, err := yaml.Marshal([]any{v})
		if err != nil {
			return err
		}
		_, err = p.w.Write(b)
		return err
	default:
		p.rows = append(p.rows, row)
		if len(p.rows) == streamBlock {
			return p.flushRows()
		}
		return nil
	}
}

func (p *streamPrinter) flushRows() error {
	tw := tabwriter.NewWriter(p.w, 0, 4, 2, ' ', 0)
	if p.n < streamBlock { // the first block carries the header
		up := make([]string, len(p.header))
		for i, h := range p.header {
			up[i] = strings.ToUpper(h)
		}
		fmt.Fprintln(tw, strings.Join(up, "\t"))
	}
	for _, r := range p.rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	p.rows = p.rows[:0]
	return tw.Flush()
}

func (p *streamPrinter) close() error {
	switch p.format {
	case output.JSON:
		if p.n == 0 {
			fmt.Fprint(p.w, p.head)
		} else {
			fmt.Fprint(p.w, "\n")
		}
		fmt.Fprintln(p.w, p.tail)
	case output.YAML:
		if p.n == 0 {
			if p.key != "" {
				fmt.Fprintf(p.w, "%s: []\n", p.key)
			} else {
				fmt.Fprint(p.w, "[]\n")
			}
		}
		fmt.Fprint(p.w, p.yamlTail)
	default:
		if len(p.rows) > 0 || p.n == 0 {
			if err := p.flushRows(); err != nil {
				return err
			}
		}
	}
	return p.w.(*bufio.Writer).Flush()
}

func newDataProfileCmd() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "profile DIGEST --store URL",
		Short: "Print the profile stored with a version (pushed with --profile)",
		Long:  "Per numeric CSV column: count, mean, variance, min, max; -o json or yaml adds the histograms.",
		Args:  cobra.ExactArgs(1),
	}
	store := dataStoreFlag(cmd)
	cmd.Flags().StringVarP(&format, "output", "o", output.Table, "output format: table, json or yaml")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		s, err := dataOpenStore(cmd, *store)
		if err != nil {
			return err
		}
		p, err := datasets.ReadProfile(cmd.Context(), s, args[0])
		if err != nil {
			return err
		}
		return output.Print(cmd.OutOrStdout(), format, p)
	}
	return cmd
}
