// Command bearing generates the example dataset, trains and evaluates the
// example anomaly model, and checks a model folder's health:
//
//	bearing gen      --out DIR [--rows 2000] [--holdout 1000] [--seed 1]
//	bearing train    --data DIR/train --holdout DIR/holdout --out MODEL [--version 1.0.0] [--corrupt]
//	bearing eval     --model MODEL --data DIR/holdout
//	bearing evaluate [--model MODEL] [--data DIR]   (defaults $CAIRN_MODEL_DIR, $CAIRN_DATASET_DIR; prints {"auc": …} on stdout)
//	bearing selftest [--model MODEL]   (default $CAIRN_MODEL_DIR; exit 1 when unhealthy)
//	bearing predict  --url http://HOST:PORT --data CSV [--rows 5]   (a client of examples/runtime)
//	bearing probe    URL   (GET URL, print the body, exit 1 unless 2xx)
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/cairn-dev/cairn/examples/bearing/model"
	"github.com/cairn-dev/cairn/examples/bearing/synth"
	"github.com/cairn-dev/cairn/registry/datasets"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "gen":
		err = gen(os.Args[2:])
	case "train":
		err = train(os.Args[2:])
	case "eval":
		err = eval(os.Args[2:])
	case "evaluate":
		err = evaluate(os.Args[2:])
	case "selftest":
		err = selftest(os.Args[2:])
	case "predict":
		err = predict(os.Args[2:])
	case "probe":
		err = probe(os.Args[2:])
	case "traffic":
		err = traffic(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "bearing %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: bearing gen|train|eval|evaluate|selftest|predict|probe|traffic [flags]  (bearing CMD -h for flags)")
	os.Exit(2)
}

func gen(args []string) error {
	fs := flag.NewFlagSet("gen", flag.ExitOnError)
	out := fs.String("out", "", "output folder: writes OUT/train/bearings.csv and OUT/holdout/bearings.csv")
	rows := fs.Int("rows", 2000, "training rows")
	holdout := fs.Int("holdout", 1000, "holdout rows (drawn from their own seed, so every --rows shares them)")
	seed := fs.Int64("seed", 1, "random seed")
	fs.Parse(args)
	if *out == "" {
		return fmt.Errorf("--out is required")
	}
	tr := synth.Generate(synth.Options{Seed: *seed, Rows: *rows})
	ho := synth.Generate(synth.Options{Seed: *seed + 1_000_003, Rows: *holdout})
	if err := synth.WriteFile(filepath.Join(*out, "train", "bearings.csv"), tr); err != nil {
		return err
	}
	if err := synth.WriteFile(filepath.Join(*out, "holdout", "bearings.csv"), ho); err != nil {
		return err
	}
	fmt.Printf("wrote %d training rows to %s and %d holdout rows to %s\n",
		len(tr), filepath.Join(*out, "train"), len(ho), filepath.Join(*out, "holdout"))
	return nil
}

// readRows reads a CSV file, or every *.csv file of a folder in name order.
func readRows(path string) (x [][]float64, y []bool, err error) {
	files := []string{path}
	if st, err := os.Stat(path); err != nil {
		return nil, nil, err
	} else if st.IsDir() {
		files, _ = filepath.Glob(filepath.Join(path, "*.csv"))
		sort.Strings(files)
		if len(files) == 0 {
			return nil, nil, fmt.Errorf("no *.csv file in %s", path)
		}
	}
	for _, f := range files {
		rows, err := synth.ReadFile(f)
		if err != nil {
			return nil, nil, err
		}
		for _, r := range rows {
			x = append(x, r.X)
			y = append(y, r.Failing)
		}
	}
	return x, y, nil
}

func train(args []string) error {
	fs := flag.NewFlagSet("train", flag.ExitOnError)
	data := fs.String("data", "", "training CSV file or folder")
	hold := fs.String("holdout", "", "holdout CSV file or folder to evaluate on (optional)")
	holdName := fs.String("holdout-name", "bearing-holdout", "dataset name recorded in metrics.json")
	out := fs.String("out", "", "model folder to write")
	version := fs.String("version", "1.0.0", "model version")
	epochs := fs.Int("epochs", 400, "gradient-descent steps")
	seed := fs.Int64("seed", 1, "weight initialisation seed")
	corrupt := fs.Bool("corrupt", false, "simulate a broken export: the model loads but fails its self-test")
	fs.Parse(args)
	if *data == "" || *out == "" {
		return fmt.Errorf("--data and --out are required")
	}
	x, y, err := readRows(*data)
	if err != nil {
		return err
	}
	start := time.Now()
	m, err := model.Train(x, y, model.TrainOptions{Version: *version, Features: synth.Features, Epochs: *epochs, Seed: *seed})
	if err != nil {
		return err
	}
	fmt.Printf("trained %s %s on %d rows in %s: loss %.4f, threshold %.3f\n",
		m.Config.Name, *version, len(x), time.Since(start).Round(time.Millisecond), m.Config.Training.FinalLoss, m.Config.Threshold)
	if *hold != "" {
		// Scores of the trained model equal those of the saved one (weights
		// are rounded to float32 before evaluation; a test checks it). With
		// --corrupt this is the evaluation the pipeline saw before the faulty
		// export step.
		if err := os.MkdirAll(*out, 0o755); err != nil {
			return err
		}
		if err := evaluateInto(m, *hold, *holdName, filepath.Join(*out, model.MetricsFile)); err != nil {
			return err
		}
	}
	if *corrupt {
		m.Corrupt()
		fmt.Println("corrupted the exported weights (--corrupt): this model fails its self-test")
	}
	if err := m.Save(*out); err != nil {
		return err
	}
	if err := writeProfile(*data, *out); err != nil {
		return err
	}
	fmt.Printf("saved %s\n", *out)
	return nil
}

// ProfileFile is the training data's profile shipped in the model folder:
// the same statistics `cairn data push --profile` stores for the dataset,
// whose bins the runtime counts its live inputs into.
const ProfileFile = "profile.json"

// writeProfile profiles the training CSV files of data into out/profile.json.
func writeProfile(data, out string) error {
	files := []string{data}
	if st, err := os.Stat(data); err != nil {
		return err
	} else if st.IsDir() {
		files, _ = filepath.Glob(filepath.Join(data, "*.csv"))
		sort.Strings(files)
	}
	p := datasets.Profile{Files: []datasets.FileProfile{}}
	for _, f := range files {
		fp, err := datasets.ProfileCSV(f, datasets.DefaultBins)
		if err != nil {
			return fmt.Errorf("profile %s: %w", f, err)
		}
		fp.Path = filepath.Base(f)
		p.Files = append(p.Files, *fp)
	}
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(out, ProfileFile), append(b, '\n'), 0o644)
}

func evaluateInto(m *model.Model, data, name, metricsPath string) error {
	x, y, err := readRows(data)
	if err != nil {
		return err
	}
	mt, err := model.Evaluate(m, x, y)
	if err != nil {
		return err
	}
	mt.Dataset = name
	fmt.Printf("holdout %s (%d rows): AUC %.4f  F1 %.4f  precision %.4f  recall %.4f\n",
		name, mt.Rows, mt.AUC, mt.F1, mt.Precision, mt.Recall)
	if metricsPath == "" {
		return nil
	}
	b, _ := json.MarshalIndent(mt, "", "  ")
	return os.WriteFile(metricsPath, append(b, '\n'), 0o644)
}

func eval(args []string) error {
	fs := flag.NewFlagSet("eval", flag.ExitOnError)
	dir := fs.String("model", "", "model folder")
	data := fs.String("data", "", "labelled CSV file or folder")
	name := fs.String("name", "bearing-holdout", "dataset name")
	out := fs.String("metrics", "", "also write the metrics as JSON to this file")
	fs.Parse(args)
	if *dir == "" || *data == "" {
		return fmt.Errorf("--model and --data are required")
	}
	m, err := model.Load(*dir)
	if err != nil {
		return err
	}
	return evaluateInto(m, *data, *name, *out)
}

// evaluate is the evaluate command of a Release's spec.evaluation: it
// scores the model of $CAIRN_MODEL_DIR on the labelled CSV files of
// $CAIRN_DATASET_DIR (the holdout an evaluator agent pulled) and prints the
// metrics as one JSON object on stdout, the only thing it prints there.
func evaluate(args []string) error {
	fs := flag.NewFlagSet("evaluate", flag.ExitOnError)
	dir := fs.String("model", os.Getenv("CAIRN_MODEL_DIR"), "model folder (default $CAIRN_MODEL_DIR)")
	data := fs.String("data", os.Getenv("CAIRN_DATASET_DIR"), "labelled CSV file or folder (default $CAIRN_DATASET_DIR)")
	fs.Parse(args)
	if strings.TrimSpace(*dir) == "" || strings.TrimSpace(*data) == "" {
		return fmt.Errorf("set --model and --data, or CAIRN_MODEL_DIR and CAIRN_DATASET_DIR")
	}
	m, err := model.Load(*dir)
	if err != nil {
		return err
	}
	x, y, err := readRows(*data)
	if err != nil {
		return err
	}
	mt, err := model.Evaluate(m, x, y)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "scored %s %s on %d rows of %s\n", m.Config.Name, m.Config.Version, mt.Rows, *data)
	return json.NewEncoder(os.Stdout).Encode(map[string]float64{
		"auc": round4(mt.AUC), "f1": round4(mt.F1), "precision": round4(mt.Precision), "recall": round4(mt.Recall), "accuracy": round4(mt.Accuracy),
	})
}

func round4(f float64) float64 { return math.Round(f*1e4) / 1e4 }

func selftest(args []string) error {
	fs := flag.NewFlagSet("selftest", flag.ExitOnError)
	dir := fs.String("model", os.Getenv("CAIRN_MODEL_DIR"), "model folder (default $CAIRN_MODEL_DIR)")
	fs.Parse(args)
	if strings.TrimSpace(*dir) == "" {
		return fmt.Errorf("no model folder: set --model or CAIRN_MODEL_DIR")
	}
	m, err := model.Load(*dir)
	if err != nil {
		return err
	}
	if err := m.SelfTest(); err != nil {
		return err
	}
	fmt.Printf("ok: %s %s passes its self-test (%d vectors)\n", m.Config.Name, m.Config.Version, len(m.Config.SelfTest.Inputs))
	return nil
}

var client = &http.Client{Timeout: 10 * time.Second}

func predict(args []string) error {
	fs := flag.NewFlagSet("predict", flag.ExitOnError)
	url := fs.String("url", "http://127.0.0.1:8080", "runtime base URL")
	data := fs.String("data", "", "labelled CSV file or folder whose first rows are sent")
	n := fs.Int("rows", 5, "how many rows to send")
	fs.Parse(args)
	if *data == "" {
		return fmt.Errorf("--data is required")
	}
	x, y, err := readRows(*data)
	if err != nil {
		return err
	}
	if *n < len(x) {
		x, y = x[:*n], y[:*n]
	}
	body, _ := json.Marshal(map[string]any{"rows": x})
	resp, err := client.Post(strings.TrimRight(*url, "/")+"/predict", "application/json", bytes.NewReader(body))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("POST /predict: %s: %s", resp.Status, bytes.TrimSpace(b))
	}
	var out struct {
		Model, Version string
		Scores         []float64
		Anomalies      []bool
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return fmt.Errorf("decode /predict answer: %w", err)
	}
	fmt.Printf("%s %s answered %d rows:\n", out.Model, out.Version, len(out.Scores))
	fmt.Printf("  %-4s %-8s %-8s %s\n", "ROW", "LABEL", "SCORE", "ANOMALY")
	for i, sc := range out.Scores {
		label := "healthy"
		if y[i] {
			label = "failing"
		}
		fmt.Printf("  %-4d %-8s %-8.4f %v\n", i, label, sc, out.Anomalies[i])
	}
	return nil
}

// traffic sends the rows of a CSV file or folder to a runtime in batches,
// round and round, for a while: live inputs for drift. --scale multiplies a
// feature (rms=3) to shift them.
func traffic(args []string) error {
	fs := flag.NewFlagSet("traffic", flag.ExitOnError)
	url := fs.String("url", "http://127.0.0.1:8080", "runtime base URL")
	data := fs.String("data", "", "CSV file or folder of rows to send")
	batch := fs.Int("batch", 100, "rows per request")
	every := fs.Duration("every", 100*time.Millisecond, "time between requests")
	dur := fs.Duration("for", 10*time.Second, "how long to send (0: until killed)")
	scale := fs.String("scale", "", "multiply a feature: NAME=FACTOR, e.g. rms=3")
	fs.Parse(args)
	if *data == "" || *batch <= 0 {
		return fmt.Errorf("--data and a positive --batch are required")
	}
	x, _, err := readRows(*data)
	if err != nil {
		return err
	}
	col, factor := -1, 1.0
	if *scale != "" {
		name, f, ok := strings.Cut(*scale, "=")
		for i, n := range synth.Features {
			if n == name {
				col = i
			}
		}
		if _, err := fmt.Sscanf(f, "%g", &factor); !ok || err != nil || col < 0 {
			return fmt.Errorf("--scale %q: want FEATURE=FACTOR with a feature of %v", *scale, synth.Features)
		}
	}
	end := time.Now().Add(*dur)
	sent := 0
	for i := 0; *dur == 0 || time.Now().Before(end); i++ {
		rows := make([][]float64, 0, *batch)
		for j := range *batch {
			r := append([]float64(nil), x[(i**batch+j)%len(x)]...)
			if col >= 0 {
				r[col] *= factor
			}
			rows = append(rows, r)
		}
		body, _ := json.Marshal(map[string]any{"rows": rows})
		resp, err := client.Post(strings.TrimRight(*url, "/")+"/predict", "application/json", bytes.NewReader(body))
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("POST /predict: %s", resp.Status)
		}
		sent += len(rows)
		time.Sleep(*every)
	}
	fmt.Printf("sent %d rows to %s\n", sent, *url)
	return nil
}

func probe(args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("usage: bearing probe URL")
	}
	resp, err := client.Get(args[0])
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	os.Stdout.Write(b)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("GET %s: %s", args[0], resp.Status)
	}
	return nil
}
