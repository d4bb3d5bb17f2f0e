package manifests

import (
	"cmp"
	"fmt"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/cairn-dev/cairn/digest"
)

// Validate checks objects built in memory the way Load checks decoded ones
// (values, duplicate names, references), fills in defaults and returns the
// snapshot. Errors carry each object's Source, without field lines.
func Validate(objs Objects) (*Snapshot, error) {
	var all []*object
	add := func(kind, name string, src Source, ptr any) {
		all = append(all, &object{kind: kind, name: name, src: src, ptr: ptr})
	}
	for _, o := range objs.Datasets {
		add(KindDataset, o.Metadata.Name, o.Source, &o)
	}
	for _, o := range objs.Models {
		add(KindModel, o.Metadata.Name, o.Source, &o)
	}
	for _, o := range objs.DeviceProfiles {
		add(KindDeviceProfile, o.Metadata.Name, o.Source, &o)
	}
	for _, o := range objs.RolloutPolicies {
		add(KindRolloutPolicy, o.Metadata.Name, o.Source, &o)
	}
	for _, o := range objs.Releases {
		add(KindRelease, o.Metadata.Name, o.Source, &o)
	}
	for _, o := range objs.Alerts {
		add(KindAlert, o.Metadata.Name, o.Source, &o)
	}
	slices.SortStableFunc(all, func(a, b *object) int {
		return cmp.Or(strings.Compare(a.src.File, b.src.File), cmp.Compare(a.src.Line, b.src.Line))
	})
	var errs ErrorList
	snap := build(all, &errs)
	if err := errs.err(); err != nil {
		return nil, err
	}
	return snap, nil
}

// build checks every object, fills in defaults, resolves references and
// assembles the snapshot. objs are in file and line order, so the first
// declaration of a name wins and later ones are the duplicates.
func build(objs []*object, errs *ErrorList) *Snapshot {
	index := map[string]map[string]*object{}
	for _, k := range Kinds() {
		index[k] = map[string]*object{}
	}
	for _, o := range objs {
		c := &checker{o: o, errs: errs}
		c.meta(o.ptr)
		if o.name != "" {
			if first, dup := index[o.kind][o.name]; dup {
				c.errorf("metadata.name", "duplicate %s name %q, first declared at %s:%d", o.kind, o.name, first.src.File, first.src.Line)
			} else {
				index[o.kind][o.name] = o
			}
		}
		switch p := o.ptr.(type) {
		case *Dataset:
			c.dataset(&p.Spec)
		case *Model:
			c.model(&p.Spec)
		case *DeviceProfile:
			c.deviceProfile(&p.Spec)
		case *RolloutPolicy:
			c.rolloutPolicy(&p.Spec)
		case *Release:
			c.release(&p.Spec)
		case *Alert:
			c.alert(&p.Spec)
		}
	}
	var out Objects
	for _, o := range objs {
		c := &checker{o: o, errs: errs, index: index}
		switch p := o.ptr.(type) {
		case *Dataset:
			p.Kind, p.Source = o.kind, o.src
			out.Datasets = append(out.Datasets, *p)
		case *Model:
			c.modelRefs(&p.Spec)
			p.Kind, p.Source = o.kind, o.src
			out.Models = append(out.Models, *p)
		case *DeviceProfile:
			p.Kind, p.Source = o.kind, o.src
			out.DeviceProfiles = append(out.DeviceProfiles, *p)
		case *RolloutPolicy:
			p.Kind, p.Source = o.kind, o.src
			out.RolloutPolicies = append(out.RolloutPolicies, *p)
		case *Release:
			c.releaseRefs(&p.Spec)
			p.Kind, p.Source = o.kind, o.src
			out.Releases = append(out.Releases, *p)
		case *Alert:
			p.Kind, p.Source = o.kind, o.src
			out.Alerts = append(out.Alerts, *p)
		}
	}
	return NewSnapshot(out)
}

// checker validates the values of one object.
type checker struct {
	o     *object
	errs  *ErrorList
	index map[string]map[string]*object // kind → name → object, for references
}

func (c *checker) errorf(p, format string, args ...any) {
	if c.o.isPoisoned(p) {
		return
	}
	c.o.report(c.errs, c.o.lineOf(p), p, fmt.Sprintf(format, args...))
}

// required reports a missing value: a field not written, or written empty.
func (c *checker) required(p string, empty bool) bool {
	if !empty {
		return true
	}
	if c.o.has(p) {
		c.errorf(p, "must not be empty")
	} else {
		c.errorf(p, "required")
	}
	return false
}

func (c *checker) check(p string, err error) {
	if err != nil {
		c.errorf(p, "%v", err)
	}
}

var (
	nameRE     = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
	labelKeyRE = regexp.MustCompile(`^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$`)
)

func (c *checker) meta(ptr any) {
	var m ObjectMeta
	switch p := ptr.(type) {
	case *Dataset:
		m = p.Metadata
	case *Model:
		m = p.Metadata
	case *DeviceProfile:
		m = p.Metadata
	case *RolloutPolicy:
		m = p.Metadata
	case *Release:
		m = p.Metadata
	case *Alert:
		m = p.Metadata
	}
	if !c.required("metadata.name", m.Name == "") {
		return
	}
	if len(m.Name) > 253 || !nameRE.MatchString(m.Name) {
		c.errorf("metadata.name", "invalid name %q: want lowercase letters, digits, '-' and '.', starting and ending with a letter or digit", m.Name)
	}
	for _, k := range sortedKeys(m.Labels) {
		c.labelKey("metadata.labels."+k, k)
	}
}

func (c *checker) labelKey(p, k string) {
	if len(k) > 316 || !labelKeyRE.MatchString(k) {
		c.errorf(p, "invalid label key %q", k)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func (c *checker) dataset(s *DatasetSpec) {
	if c.required("spec.digest", s.Digest == "") {
		c.check("spec.digest", digest.Check(s.Digest))
	}
	if s.Store == "" {
		s.Store = defaultDatasetStore
	}
}

// goArches are the architectures targets report (GOARCH values).
var goArches = []string{"386", "amd64", "arm", "arm64", "loong64", "mips", "mips64", "mips64le", "mipsle", "ppc64", "ppc64le", "riscv64", "s390x", "wasm"}

var platformRE = regexp.MustCompile(`^([a-z0-9]+)/([a-z0-9]+)(/[a-z0-9]+)?(\+[a-z0-9][a-z0-9._-]*)?$`)

// CheckPlatform reports whether p is a variant platform: os/arch[/variant][+accelerator],
// e.g. linux/arm64 or linux/amd64+cuda.
func CheckPlatform(p string) error {
	m := platformRE.FindStringSubmatch(p)
	if m == nil {
		return fmt.Errorf("invalid platform %q: want os/arch[+accelerator] such as linux/arm64 or linux/amd64+cuda", p)
	}
	if !slices.Contains(goArches, m[2]) {
		return fmt.Errorf("invalid platform %q: unknown arch %q", p, m[2])
	}
	return nil
}

func (c *checker) model(s *ModelSpec) {
	c.required("spec.version", s.Version == "")
	if c.required("spec.artifact", s.Artifact == "") {
		c.check("spec.artifact", CheckArtifact(s.Artifact))
	}
	for i, d := range s.TrainedOn {
		c.required(fmt.Sprintf("spec.trainedOn[%d]", i), d == "")
	}
	for i, e := range s.EvaluatedOn {
		c.required(fmt.Sprintf("spec.evaluatedOn[%d].dataset", i), e.Dataset == "")
	}
	for i, a := range s.Requires.Arch {
		if !slices.Contains(goArches, a) {
			c.errorf(fmt.Sprintf("spec.requires.arch[%d]", i), "unknown arch %q: want a GOARCH such as amd64, arm64 or arm", a)
		}
	}
	for i, a := range s.Requires.Accelerators {
		c.required(fmt.Sprintf("spec.requires.accelerators[%d]", i), a == "")
	}
	platforms := map[string]int{}
	for i, v := range s.Variants {
		p := fmt.Sprintf("spec.variants[%d]", i)
		if c.required(p+".platform", v.Platform == "") {
			c.check(p+".platform", CheckPlatform(v.Platform))
			if j, dup := platforms[v.Platform]; dup {
				c.errorf(p+".platform", "duplicate platform %q, also in spec.variants[%d]", v.Platform, j)
			} else {
				platforms[v.Platform] = i
			}
		}
		if c.required(p+".artifact", v.Artifact == "") {
			c.check(p+".artifact", CheckArtifact(v.Artifact))
		}
	}
	c.evaluation(s.Evaluation)
}

func (c *checker) modelRefs(s *ModelSpec) {
	for i, d := range s.TrainedOn {
		c.ref(fmt.Sprintf("spec.trainedOn[%d]", i), KindDataset, d)
	}
	for i, e := range s.EvaluatedOn {
		c.ref(fmt.Sprintf("spec.evaluatedOn[%d].dataset", i), KindDataset, e.Dataset)
	}
	if s.Evaluation != nil {
		c.ref("spec.evaluation.dataset", KindDataset, s.Evaluation.Dataset)
	}
}

// ref reports a reference to a missing object. Empty names are reported
// by the value checks.
func (c *checker) ref(p, kind, name string) {
	if name == "" {
		return
	}
	if _, ok := c.index[kind][name]; !ok {
		c.errorf(p, "%s %q not found", kind, name)
	}
}

func (c *checker) deviceProfile(s *DeviceProfileSpec) {
	if !c.o.has("spec.selector") {
		c.errorf("spec.selector", "required (write selector: {} to select every target)")
		return
	}
	for _, k := range sortedKeys(s.Selector.MatchLabels) {
		c.labelKey("spec.selector.matchLabels."+k, k)
	}
	for i, e := range s.Selector.MatchExpressions {
		p := fmt.Sprintf("spec.selector.matchExpressions[%d]", i)
		if c.required(p+".key", e.Key == "") {
			c.labelKey(p+".key", e.Key)
		}
		if !c.required(p+".operator", e.Operator == "") {
			continue
		}
		switch e.Operator {
		case OpIn, OpNotIn:
			if len(e.Values) == 0 {
				c.errorf(p+".values", "operator %s needs at least one value", e.Operator)
			}
		case OpExists, OpDoesNotExist:
			if len(e.Values) != 0 {
				c.errorf(p+".values", "operator %s takes no values", e.Operator)
			}
		default:
			c.errorf(p+".operator", "unknown operator %q: want In, NotIn, Exists or DoesNotExist", e.Operator)
		}
	}
}

func (c *checker) rolloutPolicy(s *RolloutPolicySpec) {
	prev := 0
	for i, w := range s.Waves {
		p := fmt.Sprintf("spec.waves[%d].percent", i)
		switch {
		case !c.o.has(p):
			c.errorf(p, "required")
		case w.Percent < 1 || w.Percent > 100:
			c.errorf(p, "must be between 1 and 100, got %d", w.Percent)
		case w.Percent <= prev:
			c.errorf(p, "must be greater than the previous wave's %d", prev)
		case i == len(s.Waves)-1 && w.Percent != 100:
			c.errorf(p, "the last wave must reach 100, got %d", w.Percent)
		}
		prev = max(prev, w.Percent)
	}
	if s.MaxUnavailable != "" {
		_, err := ResolveMaxUnavailable(s.MaxUnavailable, 100)
		c.check("spec.maxUnavailable", err)
	}
	if a := s.Abort; a != nil {
		if a.FailedPercent < 0 || a.FailedPercent > 100 {
			c.errorf("spec.abort.failedPercent", "must be between 0 and 100, got %v", a.FailedPercent)
		}
		if a.MinFailed < 0 {
			c.errorf("spec.abort.minFailed", "must not be negative, got %d", a.MinFailed)
		}
	}
	for i, g := range s.Gates {
		p := fmt.Sprintf("spec.gates[%d]", i)
		c.required(p+".metric", g.Metric == "")
		switch {
		case g.Max == nil && g.Min == nil:
			c.errorf(p, "set max, min or both")
		case g.Max != nil && g.Min != nil && *g.Min > *g.Max:
			c.errorf(p+".min", "must not exceed max (%v > %v)", *g.Min, *g.Max)
		}
		switch g.Aggregate {
		case "":
			s.Gates[i].Aggregate = AggregateMean
		case AggregateMean, AggregateMax, AggregateMin, AggregateP95:
		default:
			c.errorf(p+".aggregate", "unknown aggregate %q: want mean, max, min or p95", g.Aggregate)
		}
		switch {
		case g.MinSamples < 0:
			c.errorf(p+".minSamples", "must not be negative, got %d", g.MinSamples)
		case g.MinSamples == 0:
			s.Gates[i].MinSamples = 1
		}
		switch g.OnNoData {
		case "":
			s.Gates[i].OnNoData = OnNoDataFail
		case OnNoDataFail, OnNoDataPause, OnNoDataPass:
		default:
			c.errorf(p+".onNoData", "unknown onNoData %q: want fail, pause or pass", g.OnNoData)
		}
	}
	if w := s.Window; w != nil {
		if c.required("spec.window.schedule", w.Schedule == "") {
			_, err := ParseSchedule(w.Schedule)
			c.check("spec.window.schedule", err)
		}
		switch {
		case !c.o.has("spec.window.duration"):
			c.errorf("spec.window.duration", "required")
		case w.Duration.Duration <= 0:
			c.errorf("spec.window.duration", "must be positive")
		}
		if w.TimeZone == "" {
			w.TimeZone = TimeZoneDevice
		} else {
			c.check("spec.window.timeZone", CheckTimeZone(w.TimeZone))
		}
	}
	switch {
	case !c.o.has("spec.downloadTimeout"):
		s.DownloadTimeout.Duration = DefaultDownloadTimeout
	case s.DownloadTimeout.Duration <= 0:
		c.errorf("spec.downloadTimeout", "must be positive")
	}
	switch s.OnFailure {
	case "":
		s.OnFailure = OnFailureRollback
	case OnFailureRollback, OnFailurePause:
	default:
		c.errorf("spec.onFailure", "unknown value %q: want rollback or pause", s.OnFailure)
	}
	seen := map[string]int{}
	for i, name := range s.Policies {
		p := fmt.Sprintf("spec.policies[%d]", i)
		if !c.required(p, name == "") {
			continue
		}
		if j, dup := seen[name]; dup {
			c.errorf(p, "duplicate policy %q, also spec.policies[%d]", name, j)
		}
		seen[name] = i
	}
}

func (c *checker) release(s *ReleaseSpec) {
	c.required("spec.model", s.Model == "")
	if !c.o.has("spec.targets") {
		c.errorf("spec.targets", "required")
	} else if len(s.Targets) == 0 {
		c.errorf("spec.targets", "must name at least one profile")
	}
	seen := map[string]int{}
	for i, t := range s.Targets {
		p := fmt.Sprintf("spec.targets[%d].profile", i)
		if !c.required(p, t.Profile == "") {
			continue
		}
		if j, dup := seen[t.Profile]; dup {
			c.errorf(p, "duplicate profile %q, also spec.targets[%d]", t.Profile, j)
		}
		seen[t.Profile] = i
	}
	if a := s.After; a != nil {
		if c.required("spec.after.release", a.Release == "") && a.Release == c.o.name {
			c.errorf("spec.after.release", "a release cannot wait for itself")
		}
	}
	rt := s.Runtime
	if rt.Path != "" && (!path.IsAbs(rt.Path) || path.Clean(rt.Path) != rt.Path) {
		c.errorf("spec.runtime.path", "must be a clean absolute path, got %q", rt.Path)
	}
	if h := rt.HealthCheck; h != nil {
		switch {
		case h.HTTP == "" && len(h.Exec) == 0:
			c.errorf("spec.runtime.healthCheck", "set exactly one of http and exec")
		case h.HTTP != "" && len(h.Exec) != 0:
			c.errorf("spec.runtime.healthCheck.exec", "set exactly one of http and exec, not both")
		case h.HTTP != "":
			c.check("spec.runtime.healthCheck.http", checkHTTPURL(h.HTTP))
		default:
			c.required("spec.runtime.healthCheck.exec[0]", h.Exec[0] == "")
		}
		if h.Retries < 0 {
			c.errorf("spec.runtime.healthCheck.retries", "must not be negative, got %d", h.Retries)
		}
	}
	if len(rt.Restart) > 0 {
		c.required("spec.runtime.restart[0]", rt.Restart[0] == "")
	}
	if len(rt.Stop) > 0 {
		c.required("spec.runtime.stop[0]", rt.Stop[0] == "")
	}
	if k := s.Kubernetes; k != nil && !s.Prunes() && k.Prune != nil && *k.Prune {
		c.errorf("spec.kubernetes.prune", "true contradicts spec.prune: false (a release that is not pruned keeps its objects too)")
	}
	if rt.Metrics != "" {
		c.check("spec.runtime.metrics", checkHTTPURL(rt.Metrics))
	}
	if m := s.Monitor; m != nil && m.Drift != nil {
		d := m.Drift
		if d.Window.Duration < 0 {
			c.errorf("spec.monitor.drift.window", "must not be negative, got %s", d.Window)
		}
		if d.MinSamples < 0 {
			c.errorf("spec.monitor.drift.minSamples", "must not be negative, got %d", d.MinSamples)
		}
		if d.For.Duration < 0 {
			c.errorf("spec.monitor.drift.for", "must not be negative, got %s", d.For)
		}
		alarm := d.Metric != "" || d.Max != nil || d.For.Duration != 0 || d.Action != ""
		if alarm {
			if c.required("spec.monitor.drift.metric", d.Metric == "") && !isDriftMetric(d.Metric) {
				c.errorf("spec.monitor.drift.metric", "want drift_psi, drift_js or drift_ks, optionally :FEATURE, got %q", d.Metric)
			}
			c.required("spec.monitor.drift.max", d.Max == nil)
		}
		if d.Action != "" && d.Action != DriftActionRollback {
			c.errorf("spec.monitor.drift.action", "want %q or nothing, got %q", DriftActionRollback, d.Action)
		}
	}
	if f := s.Feedback; f != nil {
		if !(f.Sample > 0 && f.Sample <= 1) {
			c.errorf("spec.feedback.sample", "want a share in (0, 1], got %g", f.Sample)
		}
		if f.MaxPerDay.Bytes < 0 {
			c.errorf("spec.feedback.maxPerDay", "must not be negative, got %s", f.MaxPerDay)
		}
	}
	if s.Kubernetes != nil {
		c.kubernetes(s.Kubernetes)
	}
	c.evaluation(s.Evaluation)
}

// evaluation checks a Release's or Model's spec.evaluation: a five-field
// cron schedule, a dataset, a command, and per metric a direction and
// thresholds that can hold.
func (c *checker) evaluation(e *EvaluationSpec) {
	if e == nil {
		return
	}
	const p = "spec.evaluation"
	if c.required(p+".schedule", e.Schedule == "") {
		if _, err := ParseSchedule(e.Schedule); err != nil {
			c.errorf(p+".schedule", "%v", err)
		}
	}
	c.required(p+".dataset", e.Dataset == "")
	if c.required(p+".command", len(e.Command) == 0) {
		c.required(p+".command[0]", e.Command[0] == "")
	}
	if e.Timeout.Duration < 0 {
		c.errorf(p+".timeout", "must not be negative, got %s", e.Timeout)
	}
	if e.MaxAge.Duration < 0 {
		c.errorf(p+".maxAge", "must not be negative, got %s", e.MaxAge)
	}
	if !c.o.has(p + ".metrics") {
		c.errorf(p+".metrics", "required")
	} else if len(e.Metrics) == 0 {
		c.errorf(p+".metrics", "must name at least one metric")
	}
	for _, name := range sortedKeys(e.Metrics) {
		m, mp := e.Metrics[name], p+".metrics."+name
		if name == "" || len(name) > 128 {
			c.errorf(mp, "invalid metric name %q", name)
		}
		if m.Direction != "" && m.Direction != DirectionHigher && m.Direction != DirectionLower {
			c.errorf(mp+".direction", "want %q or %q, got %q", DirectionHigher, DirectionLower, m.Direction)
		}
		if m.Min != nil && m.Max != nil && *m.Min > *m.Max {
			c.errorf(mp+".min", "min %g is above max %g", *m.Min, *m.Max)
		}
		if m.MaxDrop != nil && !(*m.MaxDrop >= 0) {
			c.errorf(mp+".maxDrop", "must not be negative, got %g", *m.MaxDrop)
		}
		if r := m.MaxRelativeDrop; r != nil && !(*r >= 0 && *r <= 1) {
			c.errorf(mp+".maxRelativeDrop", "want a share in [0, 1], got %g", *r)
		}
	}
}

// isDriftMetric reports whether m names a drift statistic: drift_psi,
// drift_js or drift_ks, alone or with :FEATURE.
func isDriftMetric(m string) bool {
	base, feature, has := strings.Cut(m, ":")
	switch base {
	case "drift_psi", "drift_js", "drift_ks":
		return !has || feature != ""
	}
	return false
}

var (
	// dns1035RE is a Kubernetes Service name: what a release on clusters is named.
	dns1035RE = regexp.MustCompile(`^[a-z]([-a-z0-9]*[a-z0-9])?$`)
	// kubeQuantityRE is the syntax of a Kubernetes resource.Quantity.
	kubeQuantityRE = regexp.MustCompile(`^([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+|m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$`)
	envNameRE      = regexp.MustCompile(`^[-._a-zA-Z][-._a-zA-Z0-9]*$`)
	imageRE        = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._/:@-]*$`)
)

// kubernetes checks spec.kubernetes: the objects it becomes are named after
// the release, so the name must be a DNS-1035 label (a Service name).
func (c *checker) kubernetes(k *Kubernetes) {
	if len(c.o.name) > 63 || (c.o.name != "" && !dns1035RE.MatchString(c.o.name)) {
		c.errorf("spec.kubernetes", "release %q runs on clusters under its own name, which must be a DNS-1035 label: at most 63 lowercase letters, digits and '-', starting with a letter", c.o.name)
	}
	if k.Image == "" && k.ServingRuntime == "" {
		c.errorf("spec.kubernetes.image", "required (or spec.kubernetes.servingRuntime on clusters with KServe)")
	} else if k.Image != "" && !imageRE.MatchString(k.Image) {
		c.errorf("spec.kubernetes.image", "invalid image reference %q", k.Image)
	}
	if k.ServingRuntime != "" && (len(k.ServingRuntime) > 253 || !nameRE.MatchString(k.ServingRuntime)) {
		c.errorf("spec.kubernetes.servingRuntime", "invalid name %q", k.ServingRuntime)
	}
	if k.ModelFormat != "" && !dns1035RE.MatchString(strings.ToLower(k.ModelFormat)) {
		c.errorf("spec.kubernetes.modelFormat", "invalid model format %q", k.ModelFormat)
	}
	if k.Replicas != nil && (*k.Replicas < 0 || *k.Replicas > 10000) {
		c.errorf("spec.kubernetes.replicas", "must be between 0 and 10000, got %d", *k.Replicas)
	}
	if k.Port != 0 && (k.Port < 1 || k.Port > 65535) {
		c.errorf("spec.kubernetes.port", "must be between 1 and 65535, got %d", k.Port)
	}
	for _, part := range []struct {
		name string
		m    map[string]KubeQuantity
	}{{"requests", k.Resources.Requests}, {"limits", k.Resources.Limits}} {
		for _, r := range sortedKeys(part.m) {
			p := "spec.kubernetes.resources." + part.name + "." + r
			if len(r) > 316 || !labelKeyRE.MatchString(r) {
				c.errorf(p, "invalid resource name %q", r)
			}
		}
	}
	for r, lim := range k.Resources.Limits {
		if req, ok := k.Resources.Requests[r]; ok && req != "" && lim != "" && quantityValue(req) > quantityValue(lim) {
			c.errorf("spec.kubernetes.resources.requests."+r, "request %s is above the limit %s", req, lim)
		}
	}
	seen := map[string]int{}
	for i, e := range k.Env {
		p := fmt.Sprintf("spec.kubernetes.env[%d].name", i)
		if !c.required(p, e.Name == "") {
			continue
		}
		if !envNameRE.MatchString(e.Name) {
			c.errorf(p, "invalid environment variable name %q", e.Name)
		}
		if j, dup := seen[e.Name]; dup {
			c.errorf(p, "duplicate variable %q, also spec.kubernetes.env[%d]", e.Name, j)
		}
		seen[e.Name] = i
	}
}

// quantityValue is a quantity's approximate value, to compare requests
// with limits (the syntax is checked at decoding).
func quantityValue(q KubeQuantity) float64 {
	s := string(q)
	mult := 1.0
	for _, sfx := range []struct {
		s string
		m float64
	}{{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"Ti", 1 << 40}, {"Pi", 1 << 50}, {"Ei", 1 << 60},
		{"m", 1e-3}, {"k", 1e3}, {"M", 1e6}, {"G", 1e9}, {"T", 1e12}, {"P", 1e15}, {"E", 1e18}} {
		if strings.HasSuffix(s, sfx.s) {
			s, mult = strings.TrimSuffix(s, sfx.s), sfx.m
			break
		}
	}
	f, _ := strconv.ParseFloat(s, 64)
	return f * mult
}

func (c *checker) releaseRefs(s *ReleaseSpec) {
	c.ref("spec.model", KindModel, s.Model)
	for i, t := range s.Targets {
		c.ref(fmt.Sprintf("spec.targets[%d].profile", i), KindDeviceProfile, t.Profile)
	}
	c.ref("spec.rolloutPolicy", KindRolloutPolicy, s.RolloutPolicy)
	if s.Evaluation != nil {
		c.ref("spec.evaluation.dataset", KindDataset, s.Evaluation.Dataset)
	}
	if s.After == nil || s.After.Release == "" || s.After.Release == c.o.name {
		return
	}
	c.ref("spec.after.release", KindRelease, s.After.Release)
	// A promotion chain that comes back to this release never starts.
	chain := []string{c.o.name}
	for next := s.After.Release; next != ""; {
		o, ok := c.index[KindRelease][next]
		if !ok || slices.Contains(chain, next) {
			if next == c.o.name {
				c.errorf("spec.after.release", "promotion cycle: %s", strings.Join(append(chain, next), " → "))
			}
			return
		}
		chain = append(chain, next)
		if r := o.ptr.(*Release); r.Spec.After != nil {
			next = r.Spec.After.Release
		} else {
			next = ""
		}
	}
}

func checkHTTPURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("invalid URL %q: want an http:// or https:// URL with a host", s)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("invalid URL %q: port out of range", s)
		}
	}
	return nil
}

// Events returns the alert event names an Alert may subscribe to.
func Events() []string {
	return []string{EventRolloutStarted, EventRolloutDone, EventRolloutFailed, EventRolledBack, EventTargetOffline, EventDriftDetected, EventPolicyDenied, EventArtifactMissing, EventReleasePruned, EventEvaluated}
}

// Webhook formats.
const (
	WebhookJSON  = "json"
	WebhookSlack = "slack"
)

func (c *checker) alert(s *AlertSpec) {
	if !c.o.has("spec.events") {
		c.errorf("spec.events", "required")
	} else if len(s.Events) == 0 {
		c.errorf("spec.events", "must name at least one event")
	}
	seen := map[string]int{}
	for i, e := range s.Events {
		p := fmt.Sprintf("spec.events[%d]", i)
		if !slices.Contains(Events(), e) {
			c.errorf(p, "unknown event %q: want one of %s", e, strings.Join(Events(), ", "))
			continue
		}
		if j, dup := seen[e]; dup {
			c.errorf(p, "duplicate event %q, also spec.events[%d]", e, j)
		}
		seen[e] = i
	}
	if c.required("spec.webhook.url", s.Webhook.URL == "") {
		c.check("spec.webhook.url", checkHTTPURL(s.Webhook.URL))
	}
	switch s.Webhook.Format {
	case "":
		s.Webhook.Format = WebhookJSON
	case WebhookJSON, WebhookSlack:
	default:
		c.errorf("spec.webhook.format", "unknown format %q: want json or slack", s.Webhook.Format)
	}
}
