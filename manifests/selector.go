package manifests

import "slices"

// Matches reports whether labels satisfy every matchLabels entry and every
// expression of the selector. An empty selector matches everything.
func (s LabelSelector) Matches(labels map[string]string) bool {
	for k, v := range s.MatchLabels {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	for _, e := range s.MatchExpressions {
		v, ok := labels[e.Key]
		switch e.Operator {
		case OpIn:
			if !ok || !slices.Contains(e.Values, v) {
				return false
			}
		case OpNotIn:
			if ok && slices.Contains(e.Values, v) {
				return false
			}
		case OpExists:
			if !ok {
				return false
			}
		case OpDoesNotExist:
			if ok {
				return false
			}
		default:
			return false
		}
	}
	return true
}
