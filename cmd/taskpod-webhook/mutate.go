package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	jsonpatch "github.com/evanphx/json-patch/v5"
	corev1 "k8s.io/api/core/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
	"sigs.k8s.io/yaml"

	"github.com/taskpod/taskpod-webhook/webhook/mutate"
)

func runMutate(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("mutate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "Path to the configuration file; built-in defaults when empty.")
	file := fs.String("f", "", "Pod manifest (YAML or JSON) to preview; - reads standard input.")
	nsLabels := fs.String("namespace-labels", "", "Labels of the pod's namespace as k=v,k2=v2; when unset the namespace counts as opted in.")
	limitRanges := fs.String("limit-ranges", "", "The namespace's LimitRanges (YAML documents or a List, as `kubectl get limitrange -o yaml` prints), to preview the clamping.")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *file == "" {
		return errors.New("mutate: -f is required (a pod manifest, or - for standard input)")
	}
	cfg, err := loadConfig(*configPath)
	if err != nil {
		return err
	}
	in, err := readInput(*file, stdin)
	if err != nil {
		return err
	}
	raw, err := yaml.YAMLToJSON(in)
	if err != nil {
		return fmt.Errorf("mutate: %s is not YAML: %w", *file, err)
	}
	var pod corev1.Pod
	if err := json.Unmarshal(raw, &pod); err != nil {
		return fmt.Errorf("mutate: %s is not a pod: %w", *file, err)
	}
	if pod.Kind != "Pod" {
		return fmt.Errorf("mutate: %s has kind %q, want Pod", *file, pod.Kind)
	}

	bounds, err := readLimitRanges(*limitRanges)
	if err != nil {
		return err
	}
	policy := cfg.Policy()
	decision := policy.SelectPod(&pod)
	if isSet(fs, "namespace-labels") {
		labels, err := parseLabels(*nsLabels)
		if err != nil {
			return err
		}
		decision = policy.Decide(&pod, labels)
	}
	out := raw
	if decision.Mutate {
		mutated := pod.DeepCopy()
		changes := mutate.Pod(mutated, policy, bounds)
		if out, err = applyLikeWebhook(raw, mutated); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "taskpod-webhook: pod %s: changed %s\n", pod.Name, orNone(changes))
	} else {
		fmt.Fprintf(stderr, "taskpod-webhook: pod %s: unchanged (%s)\n", pod.Name, decision.Reason)
	}
	y, err := yaml.JSONToYAML(out)
	if err != nil {
		return fmt.Errorf("mutate: encoding output: %w", err)
	}
	_, err = stdout.Write(y)
	return err
}

// applyLikeWebhook computes the JSON patch the webhook would answer with and applies it to the
// input, so the preview shows exactly the API server's result and keeps the author's own fields.
func applyLikeWebhook(raw []byte, mutated *corev1.Pod) ([]byte, error) {
	after, err := json.Marshal(mutated)
	if err != nil {
		return nil, fmt.Errorf("mutate: encoding pod: %w", err)
	}
	resp := admission.PatchResponseFromRaw(raw, after)
	if !resp.Allowed {
		return nil, fmt.Errorf("mutate: computing patch: %s", resp.Result.Message)
	}
	// The API server always sends a status; an author's manifest rarely has one. Drop that op so
	// the preview shows only what the webhook would change.
	kept := resp.Patches[:0]
	for _, op := range resp.Patches {
		if op.Path != "/status" {
			kept = append(kept, op)
		}
	}
	ops, err := json.Marshal(kept)
	if err != nil {
		return nil, fmt.Errorf("mutate: encoding patch: %w", err)
	}
	patch, err := jsonpatch.DecodePatch(ops)
	if err != nil {
		return nil, fmt.Errorf("mutate: decoding patch: %w", err)
	}
	return patch.Apply(raw)
}

// readLimitRanges reads LimitRange documents, or Lists of them, from path.
func readLimitRanges(path string) (mutate.Bounds, error) {
	if path == "" {
		return mutate.Bounds{}, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return mutate.Bounds{}, fmt.Errorf("mutate: --limit-ranges: %w", err)
	}
	var ranges []corev1.LimitRange
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
	for {
		var doc struct {
			Kind  string              `json:"kind"`
			Items []corev1.LimitRange `json:"items"`
			corev1.LimitRange
		}
		if err := dec.Decode(&doc); err == io.EOF {
			break
		} else if err != nil {
			return mutate.Bounds{}, fmt.Errorf("mutate: --limit-ranges %s: %w", path, err)
		}
		switch doc.Kind {
		case "LimitRange":
			ranges = append(ranges, doc.LimitRange)
		case "List", "LimitRangeList":
			ranges = append(ranges, doc.Items...)
		case "":
		default:
			return mutate.Bounds{}, fmt.Errorf("mutate: --limit-ranges %s: kind %q, want LimitRange or List", path, doc.Kind)
		}
	}
	return mutate.BoundsFrom(ranges), nil
}

func readInput(file string, stdin io.Reader) ([]byte, error) {
	if file == "-" {
		return io.ReadAll(stdin)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("mutate: %w", err)
	}
	return b, nil
}

func isSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// parseLabels reads k=v,k2=v2.
func parseLabels(s string) (map[string]string, error) {
	labels := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		if kv = strings.TrimSpace(kv); kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("mutate: --namespace-labels: %q is not key=value", kv)
		}
		labels[k] = v
	}
	return labels, nil
}

func orNone(changes []string) string {
	if len(changes) == 0 {
		return "nothing (already mutated)"
	}
	return strings.Join(changes, ",")
}
