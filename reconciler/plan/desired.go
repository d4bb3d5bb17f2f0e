package plan

// Desired returns the desired state of every target the plan assigns a model
// to: target name → release name → model digest. Targets that cannot take a
// release's model get nothing for it; releases without a pinned digest are
// left out.
func (p *Plan) Desired() map[string]map[string]string {
	out := map[string]map[string]string{}
	for i := range p.Releases {
		r := &p.Releases[i]
		if r.To == "" || r.Change == Removed {
			continue
		}
		for _, w := range r.Waves {
			for _, t := range w.Targets {
				m := out[t]
				if m == nil {
					m = map[string]string{}
					out[t] = m
				}
				m[r.Name] = r.To
			}
		}
	}
	return out
}
