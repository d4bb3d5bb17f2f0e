package manifests

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"go.yaml.in/yaml/v3"
)

// object is one decoded document with what validation needs to place its
// errors: the line of every field it had, and the fields that failed to decode.
type object struct {
	kind, name string
	src        Source
	lines      map[string]int // field path → line; "" is the document
	poisoned   []string       // paths that failed to decode; no further errors inside
	failures   int            // errors reported, bounded by maxDocErrors
	ptr        any            // *Dataset, *Model, …
}

// lineOf returns the line of path, or of its nearest ancestor that was
// written, or of the document.
func (o *object) lineOf(p string) int {
	for {
		if l, ok := o.lines[p]; ok {
			return l
		}
		if p == "" {
			return o.src.Line
		}
		p = parentPath(p)
	}
}

// has reports whether path was written in the document. Objects not decoded
// from YAML (Validate) have no lines and report every path as written.
func (o *object) has(p string) bool {
	if o.lines == nil {
		return true
	}
	_, ok := o.lines[p]
	return ok
}

func (o *object) isPoisoned(p string) bool {
	for _, q := range o.poisoned {
		if p == q || strings.HasPrefix(p, q+".") || strings.HasPrefix(p, q+"[") {
			return true
		}
	}
	return false
}

// parentPath strips the last segment of a field path: spec.waves[1] → spec.waves → spec → "".
func parentPath(p string) string {
	i := strings.LastIndexAny(p, ".[")
	if i < 0 {
		return ""
	}
	return p[:i]
}

func joinPath(parent, field string) string {
	if parent == "" {
		return field
	}
	return parent + "." + field
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// decodeFile decodes every document of one file, appending problems to errs.
func decodeFile(file string, data []byte, errs *ErrorList) []*object {
	if n, line := estimateNodes(data); n > MaxNodes {
		*errs = append(*errs, &Error{File: file, Line: line,
			Message: fmt.Sprintf("more than %d YAML nodes in one file; refusing to parse it", MaxNodes)})
		return nil
	}
	var objs []*object
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc yaml.Node
		err := decodeNode(dec, &doc)
		if errors.Is(err, io.EOF) {
			return objs
		}
		if err != nil {
			e := &Error{File: file, Line: 1, Message: "invalid YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")}
			if m := yamlLineRE.FindStringSubmatch(err.Error()); m != nil {
				e.Line, _ = strconv.Atoi(m[1])
				e.Message = "invalid YAML: " + m[2]
			}
			*errs = append(*errs, e)
			return objs
		}
		if o := decodeDocument(file, &doc, errs); o != nil {
			objs = append(objs, o)
		}
	}
}

// decodeNode parses the next document, turning a panic of the YAML parser
// into an error.
func decodeNode(dec *yaml.Decoder, doc *yaml.Node) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("yaml: parser failed: %v", r)
		}
	}()
	return dec.Decode(doc)
}

// estimateNodes bounds the number of nodes the parser would build for data,
// without parsing it: every node but the first of a document follows an
// indicator, a separator or a line break (a flow mapping's implicit null
// values aside, which at most double the count). It returns the estimate and
// the line where it passed MaxNodes.
func estimateNodes(data []byte) (n, line int) {
	line = 1
	n = 1
	for i, c := range data {
		switch c {
		case '\n':
			line++
			n++
		case ',', '[', '{', ':', '?', '*':
			n++
		case '-': // a block sequence entry is "- "; a dash inside a word is no node
			if i+1 < len(data) && !strings.ContainsRune(" \t\r\n", rune(data[i+1])) {
				continue
			}
			n++
		default:
			continue
		}
		if n > MaxNodes {
			return n, line
		}
	}
	return n, line
}

// decodeDocument decodes one YAML document into a typed object.
func decodeDocument(file string, doc *yaml.Node, errs *ErrorList) *object {
	root := doc
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) == 0 {
			return nil
		}
		root = root.Content[0]
	}
	if root.Kind == yaml.ScalarNode && root.ShortTag() == "!!null" {
		return nil // an empty document, e.g. after a trailing ---
	}
	d := &decoder{errs: errs, obj: &object{src: Source{File: file, Line: root.Line}, lines: map[string]int{"": root.Line}}}
	if root.Kind != yaml.MappingNode {
		d.fail(root, "", "a manifest must be a mapping with apiVersion, kind, metadata and spec, got %s", describe(root))
		return nil
	}
	// Find kind and name first so every error can name its object.
	var kindNode, metaNode, specNode *yaml.Node
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], resolveAlias(root.Content[i+1])
		switch k.Value {
		case "kind":
			if kindNode == nil {
				kindNode = v
			}
		case "metadata":
			if metaNode == nil {
				metaNode = v
			}
			if v.Kind == yaml.MappingNode {
				for j := 0; j+1 < len(v.Content); j += 2 {
					if n := resolveAlias(v.Content[j+1]); v.Content[j].Value == "name" && n.Kind == yaml.ScalarNode && n.ShortTag() == "!!str" {
						d.obj.name = n.Value
					}
				}
			}
		}
	}
	var meta *ObjectMeta
	var spec reflect.Value
	if kindNode != nil && kindNode.Kind == yaml.ScalarNode && kindNode.ShortTag() == "!!str" {
		switch kindNode.Value {
		case KindDataset:
			o := &Dataset{Kind: KindDataset}
			d.obj.ptr, meta, spec = o, &o.Metadata, reflect.ValueOf(&o.Spec).Elem()
		case KindModel:
			o := &Model{Kind: KindModel}
			d.obj.ptr, meta, spec = o, &o.Metadata, reflect.ValueOf(&o.Spec).Elem()
		case KindDeviceProfile:
			o := &DeviceProfile{Kind: KindDeviceProfile}
			d.obj.ptr, meta, spec = o, &o.Metadata, reflect.ValueOf(&o.Spec).Elem()
		case KindRolloutPolicy:
			o := &RolloutPolicy{Kind: KindRolloutPolicy}
			d.obj.ptr, meta, spec = o, &o.Metadata, reflect.ValueOf(&o.Spec).Elem()
		case KindRelease:
			o := &Release{Kind: KindRelease}
			d.obj.ptr, meta, spec = o, &o.Metadata, reflect.ValueOf(&o.Spec).Elem()
		case KindAlert:
			o := &Alert{Kind: KindAlert}
			d.obj.ptr, meta, spec = o, &o.Metadata, reflect.ValueOf(&o.Spec).Elem()
		}
		if meta != nil {
			d.obj.kind = kindNode.Value
		}
	}
	if !d.checkTree(root) {
		return nil
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		key, ok := d.key(k, "")
		if !ok {
			continue
		}
		if seen[key] {
			d.fail(k, key, "duplicate key")
			continue
		}
		seen[key] = true
		d.obj.lines[key] = k.Line
		switch key {
		case "apiVersion":
			var s string
			if d.value(v, reflect.ValueOf(&s).Elem(), key, 1, fieldOpts{}) && s != APIVersion {
				d.fail(v, key, "unsupported apiVersion %q: want %s", s, APIVersion)
			}
		case "kind":
			var s string
			if d.value(v, reflect.ValueOf(&s).Elem(), key, 1, fieldOpts{}) && meta == nil {
				d.fail(v, key, "unknown kind %q: want one of %s", s, strings.Join(Kinds(), ", "))
			}
		case "metadata":
			if meta != nil {
				d.value(v, reflect.ValueOf(meta).Elem(), key, 1, fieldOpts{})
			}
		case "spec":
			specNode = v
			if meta != nil {
				d.value(v, spec, key, 1, fieldOpts{})
			}
		case "status":
			d.fail(k, key, "unknown field: status is kept by the reconciler, never in Git")
		default:
			d.fail(k, key, "unknown field%s", suggest(key, topFields))
		}
	}
	if !seen["apiVersion"] {
		d.fail(root, "apiVersion", "required")
	}
	if !seen["kind"] {
		d.fail(root, "kind", "required")
	}
	if meta == nil {
		return nil
	}
	if specNode == nil {
		d.fail(root, "spec", "required")
	}
	return d.obj
}

// topFields are the fields of every manifest, for suggestions.
var topFields = map[string]fieldInfo{"apiVersion": {}, "kind": {}, "metadata": {}, "spec": {}}

// decoder decodes the nodes of one document strictly into Go values.
type decoder struct {
	errs   *ErrorList
	obj    *object
	visits int  // nodes decoded, aliases expanded
	over   bool // too many nodes or errors; decoding stopped
}

// maxDocErrors bounds the errors reported for one document, so a list of
// thousands of wrong values does not make thousands of lines.
const maxDocErrors = 50

func (d *decoder) fail(n *yaml.Node, p, format string, args ...any) {
	d.failLine(n.Line, p, format, args...)
}

func (d *decoder) failLine(line int, p, format string, args ...any) {
	if d.over {
		return
	}
	if !d.obj.report(d.errs, line, p, fmt.Sprintf(format, args...)) {
		d.over = true
	}
	d.obj.poisoned = append(d.obj.poisoned, p)
}

// report appends an error about the object, up to maxDocErrors of them. It
// returns false once the limit is passed.
func (o *object) report(errs *ErrorList, line int, p, msg string) bool {
	o.failures++
	if o.failures > maxDocErrors+1 {
		return false
	}
	if o.failures == maxDocErrors+1 {
		p, msg = "", fmt.Sprintf("more than %d errors in this document; stopping", maxDocErrors)
	}
	*errs = append(*errs, &Error{File: o.src.File, Line: line, Kind: o.kind, Name: o.name, Field: p, Message: msg})
	return o.failures <= maxDocErrors
}

// checkTree refuses a document nested deeper than MaxDepth, walking the tree
// as parsed (aliases not expanded).
func (d *decoder) checkTree(root *yaml.Node) bool {
	type item struct {
		n     *yaml.Node
		depth int
	}
	stack := []item{{root, 0}}
	for len(stack) > 0 {
		it := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if it.depth > MaxDepth {
			d.fail(it.n, "", "nested deeper than %d levels; refusing to decode it", MaxDepth)
			return false
		}
		for _, c := range it.n.Content {
			stack = append(stack, item{c, it.depth + 1})
		}
	}
	return true
}

func resolveAlias(n *yaml.Node) *yaml.Node {
	for i := 0; n.Kind == yaml.AliasNode && n.Alias != nil && i < 10; i++ {
		n = n.Alias
	}
	return n
}

// key returns the string of a mapping key, failing on other keys.
func (d *decoder) key(k *yaml.Node, parent string) (string, bool) {
	k = resolveAlias(k)
	if k.Kind != yaml.ScalarNode {
		d.fail(k, parent, "mapping keys must be strings, got %s", describe(k))
		return "", false
	}
	if k.ShortTag() == "!!merge" {
		d.fail(k, parent, "merge keys (<<) are not supported")
		return "", false
	}
	if k.ShortTag() != "!!str" {
		d.fail(k, joinPath(parent, k.Value), "mapping keys must be strings, got %s; quote it", describe(k))
		return "", false
	}
	return k.Value, true
}

// fieldOpts are decoding options of a struct field, from its cairn tag.
type fieldOpts struct {
	intOrString bool // a string field that also takes an integer (maxUnavailable: 3)
}

type fieldInfo struct {
	index int
	opts  fieldOpts
}

var fieldCache sync.Map // reflect.Type → map[string]fieldInfo

// fieldsOf maps the JSON names of a struct's fields to their index.
func fieldsOf(t reflect.Type) map[string]fieldInfo {
	if m, ok := fieldCache.Load(t); ok {
		return m.(map[string]fieldInfo)
	}
	m := map[string]fieldInfo{}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		m[name] = fieldInfo{index: i, opts: fieldOpts{intOrString: f.Tag.Get("cairn") == "intOrString"}}
	}
	fieldCache.Store(t, m)
	return m
}

var (
	durationType = reflect.TypeFor[Duration]()
	quantityType = reflect.TypeFor[Quantity]()
	kubeQtyType  = reflect.TypeFor[KubeQuantity]()
)

// value decodes n into v, reporting what does not fit at path p. It returns
// whether v was set without error.
func (d *decoder) value(n *yaml.Node, v reflect.Value, p string, depth int, opts fieldOpts) bool {
	if d.over {
		return false
	}
	line := n.Line
	d.visits++
	if d.visits > MaxNodes {
		d.failLine(line, p, "document expands to more than %d nodes through aliases; refusing to decode it", MaxNodes)
		d.over = true
		d.obj.failures = maxDocErrors + 1 // what was decoded is partial: report nothing more
		return false
	}
	if depth > MaxDepth {
		d.failLine(line, p, "nested deeper than %d levels (through aliases); refusing to decode it", MaxDepth)
		return false
	}
	n = resolveAlias(n)
	if n.Kind == yaml.AliasNode {
		d.failLine(line, p, "unresolved alias")
		return false
	}
	tag := n.ShortTag()
	if n.Kind == yaml.ScalarNode && tag == "!!null" {
		return true // absent: the zero value
	}
	switch v.Type() {
	case durationType:
		s, ok := d.scalar(n, line, p, "a duration such as 30m", "!!str")
		if !ok {
			return false
		}
		dur, err := ParseDuration(s)
		if err != nil {
			d.failLine(line, p, "%v", err)
			return false
		}
		v.Set(reflect.ValueOf(Duration{dur}))
		return true
	case quantityType:
		s, ok := d.scalar(n, line, p, "a quantity such as 256Mi", "!!str", "!!int")
		if !ok {
			return false
		}
		q, err := ParseQuantity(s)
		if err != nil {
			d.failLine(line, p, "%v", err)
			return false
		}
		v.Set(reflect.ValueOf(q))
		return true
	case kubeQtyType:
		s, ok := d.scalar(n, line, p, "a quantity such as 500m or 1Gi", "!!str", "!!int", "!!float")
		if !ok {
			return false
		}
		if !kubeQuantityRE.MatchString(s) {
			d.failLine(line, p, "invalid quantity %q: want a Kubernetes quantity such as 500m, 2 or 1Gi", s)
			return false
		}
		v.SetString(s)
		return true
	}
	switch v.Kind() {
	case reflect.String:
		tags := []string{"!!str"}
		if opts.intOrString {
			tags = append(tags, "!!int")
		}
		s, ok := d.scalar(n, line, p, "a string", tags...)
		if ok {
			v.SetString(s)
		}
		return ok
	case reflect.Bool:
		s, ok := d.scalar(n, line, p, "true or false", "!!bool")
		if ok {
			v.SetBool(strings.EqualFold(s, "true"))
		}
		return ok
	case reflect.Int, reflect.Int64:
		if _, ok := d.scalar(n, line, p, "an integer", "!!int"); !ok {
			return false
		}
		var i int64
		if err := n.Decode(&i); err != nil || v.OverflowInt(i) {
			d.failLine(line, p, "integer %s out of range", n.Value)
			return false
		}
		v.SetInt(i)
		return true
	case reflect.Float64:
		if _, ok := d.scalar(n, line, p, "a number", "!!int", "!!float"); !ok {
			return false
		}
		var f float64
		if err := n.Decode(&f); err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			d.failLine(line, p, "want a finite number, got %s", n.Value)
			return false
		}
		v.SetFloat(f)
		return true
	case reflect.Pointer:
		e := reflect.New(v.Type().Elem())
		ok := d.value(n, e.Elem(), p, depth, opts)
		v.Set(e)
		return ok
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.failLine(line, p, "want a list, got %s", describe(n))
			return false
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		ok := true
		for i, c := range n.Content {
			ep := p + "[" + strconv.Itoa(i) + "]"
			d.obj.lines[ep] = c.Line
			ok = d.value(c, s.Index(i), ep, depth+1, fieldOpts{}) && ok
		}
		v.Set(s)
		return ok
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			d.failLine(line, p, "want a mapping, got %s", describe(n))
			return false
		}
		m := reflect.MakeMapWithSize(v.Type(), len(n.Content)/2)
		ok := true
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, ok2 := d.key(n.Content[i], p)
			if !ok2 {
				ok = false
				continue
			}
			kp := joinPath(p, k)
			if m.MapIndex(reflect.ValueOf(k)).IsValid() {
				d.fail(n.Content[i], kp, "duplicate key")
				ok = false
				continue
			}
			d.obj.lines[kp] = n.Content[i].Line
			e := reflect.New(v.Type().Elem()).Elem()
			ok = d.value(n.Content[i+1], e, kp, depth+1, fieldOpts{}) && ok
			m.SetMapIndex(reflect.ValueOf(k), e)
		}
		v.Set(m)
		return ok
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			d.failLine(line, p, "want a mapping, got %s", describe(n))
			return false
		}
		fields := fieldsOf(v.Type())
		seen := make(map[string]bool, len(n.Content)/2)
		ok := true
		for i := 0; i+1 < len(n.Content); i += 2 {
			kn := n.Content[i]
			k, ok2 := d.key(kn, p)
			if !ok2 {
				ok = false
				continue
			}
			kp := joinPath(p, k)
			if seen[k] {
				d.fail(kn, kp, "duplicate key")
				ok = false
				continue
			}
			seen[k] = true
			f, known := fields[k]
			if !known {
				d.failLine(kn.Line, kp, "unknown field%s", suggest(k, fields))
				continue
			}
			d.obj.lines[kp] = kn.Line
			ok = d.value(n.Content[i+1], v.Field(f.index), kp, depth+1, f.opts) && ok
		}
		return ok
	}
	d.failLine(line, p, "cannot decode into %s", v.Type())
	return false
}

// scalar returns the value of a scalar node whose tag is one of tags.
func (d *decoder) scalar(n *yaml.Node, line int, p, want string, tags ...string) (string, bool) {
	if n.Kind != yaml.ScalarNode || !slices.Contains(tags, n.ShortTag()) {
		hint := ""
		if n.Kind == yaml.ScalarNode && slices.Contains(tags, "!!str") {
			hint = "; quote it to make it a string"
		}
		d.failLine(line, p, "want %s, got %s%s", want, describe(n), hint)
		return "", false
	}
	return n.Value, true
}

// describe names what a node is, for error messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	case yaml.DocumentNode:
		return "a document"
	}
	v := n.Value
	if len(v) > 40 {
		v = v[:40] + "…"
	}
	switch n.ShortTag() {
	case "!!str":
		return fmt.Sprintf("string %q", v)
	case "!!int":
		return "integer " + v
	case "!!float":
		return "number " + v
	case "!!bool":
		return "boolean " + v
	case "!!null":
		return "null"
	case "!!timestamp":
		return "timestamp " + v
	case "!!binary":
		return "binary data"
	}
	return fmt.Sprintf("%s %q", n.ShortTag(), v)
}

// suggest names the known field closest to an unknown one, if any is close.
func suggest(k string, fields map[string]fieldInfo) string {
	best, bestDist := "", 3
	for name := range fields {
		if dist := editDistance(strings.ToLower(k), strings.ToLower(name)); dist < bestDist || (dist == bestDist && best != "" && name < best) {
			best, bestDist = name, dist
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %s?)", best)
}

func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
