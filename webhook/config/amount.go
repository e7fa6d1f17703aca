package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
)

// Amount is a resource quantity as written in the file. YAML turns `cpu: 1` into a number and
// `cpu: "1"` into a string; both mean the same to an admin, so both are accepted.
type Amount string

// UnmarshalJSON accepts a JSON string or number.
func (a *Amount) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*a = Amount(s)
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("want a quantity such as 500m or 1Gi, got %s", b)
	}
	*a = Amount(n.String())
	return nil
}

// Duration is a Go duration as written in the file, such as 10m or 1h30m.
type Duration string

// Get returns the parsed duration; valid after Parse.
func (d Duration) Get() time.Duration {
	v, _ := time.ParseDuration(string(d))
	return v
}
