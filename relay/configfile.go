//go:build linux

package relay

import (
	"fmt"
	"os"
	"reflect"
	"time"

	"gopkg.in/yaml.v3"
)

// LoadConfigFile reads a YAML file over DefaultConfig. Each top-level key
// is a Config field's yaml tag; unknown keys are errors, so a typo never
// silently falls back to a default. A list replaces the default list.
// Errors name the key and its line, e.g.
// "relay: config: relay.yaml: min_port: ... (line 3)".
func LoadConfigFile(path string) (Config, error) {
	cfg := DefaultConfig()
	b, err := os.ReadFile(path)
	if err != nil {
		return cfg, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if err := cfg.decodeYAML(b); err != nil {
		return cfg, fmt.Errorf("%w: %s: %w", ErrConfig, path, err)
	}
	return cfg, nil
}

// decodeYAML sets the fields b names; c is left unchanged on error.
// Decoding is per key so that every error names the key (yaml.v3's own
// type errors name only a line).
func (c *Config) decodeYAML(b []byte) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return err
	}
	if len(doc.Content) == 0 {
		return nil // an empty file is the defaults
	}
	top := doc.Content[0]
	if top.Kind == yaml.ScalarNode && top.Tag == "!!null" {
		return nil // a file of only "---" or "~"
	}
	if top.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: the file must be a mapping of settings", top.Line)
	}
	scratch := *c
	v := reflect.ValueOf(&scratch).Elem()
	fields := map[string]int{}
	for i := range v.NumField() {
		fields[yamlKey(v.Type().Field(i))] = i
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(top.Content); i += 2 {
		k, val := top.Content[i], top.Content[i+1]
		idx, ok := fields[k.Value]
		if !ok {
			return fmt.Errorf("%s: unknown setting (line %d)", k.Value, k.Line)
		}
		if line, dup := seen[k.Value]; dup {
			return fmt.Errorf("%s: set twice (lines %d and %d)", k.Value, line, k.Line)
		}
		seen[k.Value] = k.Line
		if err := decodeField(val, v.Field(idx), v.Type().Field(idx)); err != nil {
			return fmt.Errorf("%s: %w (line %d)", k.Value, err, val.Line)
		}
	}
	*c = scratch
	return nil
}

var durationType = reflect.TypeFor[time.Duration]()

// decodeField decodes one value into the field f. Durations are Go
// duration strings ("30s"); a list field tagged pairs:"=" also takes a
// mapping, each entry becoming "key=value".
func decodeField(n *yaml.Node, v reflect.Value, f reflect.StructField) error {
	switch {
	case n.ShortTag() == "!!null":
		// as yaml.v3 itself does: a list becomes empty, a scalar stays
	case f.Type == durationType:
		var s string
		if err := n.Decode(&s); err != nil {
			return err
		}
		d, err := time.ParseDuration(s)
		if err != nil {
			return err
		}
		v.SetInt(int64(d))
		return nil
	case f.Tag.Get("pairs") != "":
		sep := f.Tag.Get("pairs") // between key and value, as arg shows
		switch n.Kind {
		case yaml.SequenceNode:
			var l []string
			if err := n.Decode(&l); err != nil {
				return err
			}
			v.Set(reflect.ValueOf(l))
		case yaml.MappingNode:
			var out []string
			for i := 0; i+1 < len(n.Content); i += 2 {
				out = append(out, n.Content[i].Value+sep+n.Content[i+1].Value)
			}
			v.Set(reflect.ValueOf(out))
		default:
			return fmt.Errorf("line %d: want a list of %s or a mapping", n.Line, f.Tag.Get("arg"))
		}
		return nil
	}
	return n.Decode(v.Addr().Interface())
}
