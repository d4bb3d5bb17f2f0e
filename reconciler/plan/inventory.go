package plan

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"

	"sigs.k8s.io/yaml"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/manifests"
)

// MaxInventorySize bounds an inventory file (100,000 targets fit in far less).
const MaxInventorySize = 512 << 20

// ReadInventory decodes an inventory file, YAML or JSON: either a list of
// targets ({name, labels, facts: {arch, os, memory, accelerators, …},
// models: {release: digest}, layers: [digest]}) or an object as
// `GET /api/v1/inventory` returns it ({targets: […], releases: […]}).
// Memory and diskFree may be a number of bytes or a quantity ("4Gi").
// Unknown fields are errors.
func ReadInventory(r io.Reader) (*fleet.Inventory, error) {
	b, err := io.ReadAll(io.LimitReader(r, MaxInventorySize+1))
	if err != nil {
		return nil, fmt.Errorf("read inventory: %w", err)
	}
	if len(b) > MaxInventorySize {
		return nil, fmt.Errorf("read inventory: larger than %d bytes", MaxInventorySize)
	}
	j := b
	if t := bytes.TrimSpace(b); len(t) == 0 || (t[0] != '[' && t[0] != '{') {
		if j, err = yaml.YAMLToJSON(b); err != nil {
			return nil, fmt.Errorf("read inventory: %w", err)
		}
	}
	var raw any
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.UseNumber()
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("read inventory: %w", err)
	}
	var targets []any
	switch v := raw.(type) {
	case []any:
		targets = v
	case map[string]any:
		targets, _ = v["targets"].([]any)
	case nil:
	default:
		return nil, fmt.Errorf("read inventory: want a list of targets or an object with targets")
	}
	for i, t := range targets {
		m, ok := t.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("read inventory: target %d: want an object", i)
		}
		facts, ok := m["facts"].(map[string]any)
		if !ok {
			continue
		}
		for _, k := range []string{"memory", "diskFree"} {
			s, ok := facts[k].(string)
			if !ok {
				continue
			}
			q, err := manifests.ParseQuantity(s)
			if err != nil {
				return nil, fmt.Errorf("read inventory: target %v: facts.%s: %w", m["name"], k, err)
			}
			facts[k] = q.Bytes
		}
	}
	if j, err = json.Marshal(raw); err != nil {
		return nil, fmt.Errorf("read inventory: %w", err)
	}
	inv := &fleet.Inventory{}
	dec = json.NewDecoder(bytes.NewReader(j))
	dec.DisallowUnknownFields()
	if _, isList := raw.([]any); isList {
		err = dec.Decode(&inv.Targets)
	} else if raw != nil {
		err = dec.Decode(inv)
	}
	if err != nil {
		return nil, fmt.Errorf("read inventory: %w", err)
	}
	seen := make(map[string]bool, len(inv.Targets))
	for i, t := range inv.Targets {
		if t.Name == "" {
			return nil, fmt.Errorf("read inventory: target %d has no name", i)
		}
		if seen[t.Name] {
			return nil, fmt.Errorf("read inventory: target %s listed twice", t.Name)
		}
		seen[t.Name] = true
	}
	return inv, nil
}
