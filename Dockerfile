# syntax=docker/dockerfile:1
# Multi-stage build of taskpod-webhook: `make docker-build IMG=...`.

ARG GO_VERSION=1.26
# The runtime base. The default is an empty image holding the static binary, CA certificates
# and a non-root user, the same shape as distroless static:nonroot; set RUNTIME_IMAGE to use
# that image from your own registry or mirror instead.
ARG RUNTIME_IMAGE=scratch

FROM golang:${GO_VERSION} AS build
WORKDIR /src
# Modules first: this layer is reused until go.mod or go.sum change.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY cmd/ cmd/
COPY webhook/ webhook/
ARG VERSION=dev
ARG TARGETOS=linux
ARG TARGETARCH
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/taskpod-webhook ./cmd/taskpod-webhook
RUN echo 'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' > /out/passwd

FROM ${RUNTIME_IMAGE}
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/passwd /etc/passwd
COPY --from=build /out/taskpod-webhook /taskpod-webhook
USER 65532:65532
ENTRYPOINT ["/taskpod-webhook"]
CMD ["serve"]
