package config

import (
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"
)

// Load reads and validates the configuration file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	cfg, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// Parse validates a YAML (or JSON) configuration document. An empty document yields the defaults.
func Parse(data []byte) (*Config, error) {
	raw, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, fmt.Errorf("not valid YAML: %w", err)
	}
	var generic any
	if err := json.Unmarshal(raw, &generic); err != nil {
		return nil, fmt.Errorf("not valid YAML: %w", err)
	}
	// Check the shape first: encoding/json names neither the path of an unknown key nor the key
	// behind a custom decoder's error, and an admin needs both.
	if err := checkShape(generic, reflect.TypeFor[Config](), ""); err != nil {
		return nil, err
	}
	var cfg Config
	if generic != nil {
		dec := json.NewDecoder(strings.NewReader(string(raw)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&cfg); err != nil {
			return nil, err
		}
	}
	cfg.applyDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &cfg, nil
}

var amountType = reflect.TypeFor[Amount]()

// checkShape walks a decoded JSON value against the Go type it will be decoded into and reports
// the first unknown key or wrong kind of value, naming its full path.
func checkShape(v any, t reflect.Type, path string) error {
	if v == nil {
		return nil // null: the key is absent and takes its default
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == amountType:
		switch v.(type) {
		case string, float64:
			return nil
		}
		return shapeError(path, "a quantity such as 500m or 1Gi", v)
	case t.Kind() == reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			return shapeError(path, "a mapping", v)
		}
		fields := jsonFields(t)
		for _, key := range sortedKeys(m) {
			f, ok := fields[key]
			if !ok {
				known := make([]string, 0, len(fields))
				for k := range fields {
					known = append(known, k)
				}
				sort.Strings(known)
				return fmt.Errorf("%s: unknown key (known keys here: %s)", join(path, key), strings.Join(known, ", "))
			}
			if err := checkShape(m[key], f, join(path, key)); err != nil {
				return err
			}
		}
	case t.Kind() == reflect.Map:
		m, ok := v.(map[string]any)
		if !ok {
			return shapeError(path, "a mapping", v)
		}
		for _, key := range sortedKeys(m) {
			if err := checkShape(m[key], t.Elem(), join(path, key)); err != nil {
				return err
			}
		}
	case t.Kind() == reflect.Slice:
		s, ok := v.([]any)
		if !ok {
			return shapeError(path, "a list", v)
		}
		for i, e := range s {
			if err := checkShape(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	case t.Kind() == reflect.String:
		if _, ok := v.(string); !ok {
			return shapeError(path, "a string", v)
		}
	case t.Kind() == reflect.Bool:
		if _, ok := v.(bool); !ok {
			return shapeError(path, "true or false", v)
		}
	}
	return nil
}

// jsonFields maps the JSON names of a struct's exported, tagged fields to their types.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	fields := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if !f.IsExported() || name == "" || name == "-" {
			continue
		}
		fields[name] = f.Type
	}
	return fields
}

func shapeError(path, want string, got any) error {
	kind := "a string"
	switch got.(type) {
	case map[string]any:
		kind = "a mapping"
	case []any:
		kind = "a list"
	case float64:
		kind = "a number"
	case bool:
		kind = "a boolean"
	}
	if path == "" {
		path = "(top level)"
	}
	return fmt.Errorf("%s: want %s, got %s", path, want, kind)
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
