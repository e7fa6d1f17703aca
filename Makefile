# taskpod-webhook. `make help` lists the targets.

# Tool binaries are built from Go modules into bin/ (git-ignored) and reused while their sources
# are unchanged. Nothing else is downloaded.
BIN        ?= $(CURDIR)/bin
GO         ?= go
VERSION    ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS    := -X main.version=$(VERSION)
FUZZTIME   ?= 30s
BENCHTIME  ?= 2s

KUBE_APISERVER := $(BIN)/kube-apiserver
ETCD           := $(BIN)/etcd
HELM           := $(BIN)/helm
CERT_MANAGER   := $(BIN)/cert-manager
CONTROL_PLANE  := $(KUBE_APISERVER) $(ETCD)
CM_CRDS        := $(BIN)/cert-manager-crds/.done
TOOLS          := $(CONTROL_PLANE) $(HELM) $(CERT_MANAGER) $(CM_CRDS)
CHART          := charts/taskpod-webhook
IMG            ?= taskpod/taskpod-webhook:$(VERSION)
CONTAINER_TOOL ?= docker
HELM_VERSION   := v4.3.2

export KUBEBUILDER_ASSETS := $(BIN)

.DEFAULT_GOAL := help

##@ General

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage:\n  make \033[36m<target>\033[0m\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) } ' $(MAKEFILE_LIST)

##@ Development

.PHONY: demo
demo: $(CONTROL_PLANE) ## Run the webhook on a local kube-apiserver + etcd and show what it changes.
	$(GO) run ./test/demo

.PHONY: test
test: $(TOOLS) lint ## Run every test: unit, golden, fuzz seeds, and integration on a real API server.
	$(GO) test -count=1 ./...

.PHONY: test-unit
test-unit: ## Run only the tests that need no control plane.
	$(GO) test -count=1 ./webhook/... ./cmd/...

.PHONY: lint
lint: ## Check formatting, go vet, tidy go.mod and module checksums.
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './bin/*')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) mod tidy -diff
	$(GO) mod verify

.PHONY: fmt
fmt: ## Format the code.
	gofmt -w $$(git ls-files '*.go')

.PHONY: fuzz
fuzz: ## Fuzz the admission handler for FUZZTIME per target (default 30s).
	$(GO) test ./webhook/admission -run '^$$' -fuzz '^FuzzAdmitPod$$' -fuzztime $(FUZZTIME)
	$(GO) test ./webhook/admission -run '^$$' -fuzz '^FuzzServeHTTP$$' -fuzztime $(FUZZTIME)

.PHONY: bench
bench: ## Benchmark the admission handler against the bare decode+encode floor.
	$(GO) test ./webhook/admission -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME)

.PHONY: load
load: $(CONTROL_PLANE) build ## Measure sync at scale: rotation to 1,000 namespaces, memory with 5,000 unrelated Secrets.
	$(GO) run ./test/load --binary $(BIN)/taskpod-webhook

.PHONY: golden
golden: ## Rewrite the mutation golden files after an intended change.
	$(GO) test ./webhook/mutate -run TestGolden -update

##@ Build

.PHONY: build
build: ## Build bin/taskpod-webhook.
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/taskpod-webhook ./cmd/taskpod-webhook

##@ Chart

.PHONY: chart-lint
chart-lint: $(HELM) ## Lint the Helm chart.
	$(HELM) lint --strict $(CHART)

.PHONY: chart-template
chart-template: $(HELM) ## Render the chart with its default values.
	$(HELM) template taskpod-webhook $(CHART) --namespace taskpod-system

.PHONY: manifests
manifests: $(HELM) ## Regenerate config/ (kustomize) from the chart's defaults.
	$(GO) test ./test/chart -run TestKustomizeMatchesChart -update

##@ Image

.PHONY: docker-build
docker-build: ## Build the container image IMG (needs a container engine).
	$(CONTAINER_TOOL) build --build-arg VERSION=$(VERSION) -t $(IMG) .

.PHONY: docker-push
docker-push: ## Push the container image IMG.
	$(CONTAINER_TOOL) push $(IMG)

##@ Tools (built from Go modules into bin/)

.PHONY: tools
tools: $(TOOLS) ## Build kube-apiserver, etcd, helm and the cert-manager runner (first build: about 20 minutes on 2 cores).

$(KUBE_APISERVER): test/tools/go.mod test/tools/go.sum test/tools/kube-apiserver/main.go
	@echo "Building kube-apiserver from k8s.io/kubernetes (first build takes about 10 minutes)"
	cd test/tools && $(GO) build -o $@ ./kube-apiserver

$(ETCD): test/tools/etcd/go.mod test/tools/etcd/go.sum test/tools/etcd/main.go
	@echo "Building etcd from go.etcd.io/etcd/server/v3"
	cd test/tools/etcd && $(GO) build -o $@ .

$(HELM):
	@echo "Building helm $(HELM_VERSION) from helm.sh/helm/v4"
	GOBIN=$(BIN) $(GO) install helm.sh/helm/v4/cmd/helm@$(HELM_VERSION)

$(CERT_MANAGER): test/tools/certmanager/go.mod test/tools/certmanager/go.sum test/tools/certmanager/main.go
	@echo "Building the cert-manager runner (issuing controller and cainjector) from github.com/cert-manager/cert-manager"
	cd test/tools/certmanager && $(GO) build -o $@ .

# cert-manager's CRDs ship in its Go module; copy them where the chart tests find them.
$(CM_CRDS): test/tools/certmanager/go.mod
	mkdir -p $(dir $@)
	cd test/tools/certmanager && cp "$$($(GO) list -m -f '{{.Dir}}' github.com/cert-manager/cert-manager)"/deploy/crds/*.yaml $(dir $@)
	chmod u+w $(dir $@)*.yaml && touch $@

.PHONY: clean
clean: ## Remove built binaries (bin/), including the cached tools.
	rm -rf $(BIN)
