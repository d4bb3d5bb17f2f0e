package lineage

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cairn-dev/cairn/digest"
)

// Rows prints a subgraph as a table of its nodes (internal/output's Tabular).
func (sg *Subgraph) Rows() ([]string, [][]string) {
	header := []string{"depth", "type", "node", "via"}
	via := map[string][]string{}
	for _, l := range sg.Links {
		// The far end of a link is the node the walk reached through it.
		far := l.From
		if (sg.Direction == "upstream") != (l.Type == EdgeDeployedTo) {
			far = l.To
		}
		via[far] = appendUnique(via[far], l.Type)
	}
	var rows [][]string
	for _, n := range sg.Nodes {
		_, id, _ := strings.Cut(n.ID, ":")
		rows = append(rows, []string{strconv.Itoa(n.Depth), n.Type, id, strings.Join(via[n.ID], ",")})
	}
	if sg.Truncated {
		rows = append(rows, []string{"…", "", fmt.Sprintf("truncated at %d nodes", MaxNodes), ""})
	}
	return header, rows
}

func appendUnique(s []string, v string) []string {
	for _, x := range s {
		if x == v {
			return s
		}
	}
	return append(s, v)
}

// Deployments is a list of active models, printable as a table.
type Deployments []Active

// Rows prints the deployments as a table.
func (d Deployments) Rows() ([]string, [][]string) {
	header := []string{"target", "release", "model", "since", "outcome", "commit", "trained on"}
	var rows [][]string
	for _, a := range d {
		var ds []string
		for _, n := range a.Datasets {
			_, id, _ := strings.Cut(n, ":")
			ds = append(ds, short(id))
		}
		rows = append(rows, []string{a.Target, nonEmpty(a.Release, "-"), short(a.Model), a.Since.Format(time.RFC3339), a.Outcome, nonEmpty(short(a.Commit), "-"), nonEmpty(strings.Join(ds, ","), "-")})
	}
	return header, rows
}

// short abbreviates a digest or commit to 12 hex digits.
func short(s string) string {
	if strings.Contains(s, ":") || len(s) == 40 || len(s) == 64 {
		return digest.Short(s)
	}
	return s
}

var dotShapes = map[string]string{
	NodeCommit: "note", NodeRelease: "folder", NodeModel: "box3d", NodeDataset: "cylinder", NodeTarget: "component", NodeRollout: "hexagon",
}

// WriteDot renders the subgraph for Graphviz: one node per lineage node,
// one arrow per link, labelled with its type (and last outcome for
// deployments), the root drawn bold.
func (sg *Subgraph) WriteDot(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "digraph lineage {\n  rankdir=LR;\n  node [fontname=\"Helvetica\", fontsize=10];\n  edge [fontname=\"Helvetica\", fontsize=9];\n")
	nodes := append([]NodeInfo(nil), sg.Nodes...)
	sort.SliceStable(nodes, func(i, j int) bool { return nodes[i].Depth < nodes[j].Depth })
	for _, n := range nodes {
		_, id, _ := strings.Cut(n.ID, ":")
		attrs := fmt.Sprintf("label=%s, shape=%s", strconv.Quote(n.Type+"\n"+short(id)), nonEmpty(dotShapes[n.Type], "ellipse"))
		if n.ID == sg.Root {
			attrs += ", style=bold"
		}
		fmt.Fprintf(&b, "  %s [%s];\n", strconv.Quote(n.ID), attrs)
	}
	for _, l := range sg.Links {
		label := l.Type
		if l.Outcome != "" {
			label += "\n" + l.Outcome
		}
		if l.Count > 1 {
			label += fmt.Sprintf(" ×%d", l.Count)
		}
		fmt.Fprintf(&b, "  %s -> %s [label=%s];\n", strconv.Quote(l.From), strconv.Quote(l.To), strconv.Quote(label))
	}
	b.WriteString("}\n")
	_, err := io.WriteString(w, b.String())
	return err
}
