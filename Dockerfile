# The kafka-connector image: a static binary on a distroless base, running
# as a non-root user. The release workflow (.github/workflows/release.yml)
# builds it for linux/amd64 and linux/arm64 and publishes it as
# ghcr.io/kafka-connector/kafka-connector:<version>; before a release, build
# and push your own (docs/install.md):
#
#   docker buildx build --platform linux/amd64,linux/arm64 \
#     --build-arg VERSION=$(git describe --tags --always) \
#     --build-arg COMMIT=$(git rev-parse HEAD) \
#     -t registry.example.com/team/kafka-connector:dev --push .
#
# The binary is cross-compiled on the build machine's platform, so no
# emulation is needed. VERSION and COMMIT reach `kafka-connector version`
# and the image's labels alike.

# Go release of the build stage: at least the go line of go.mod, as the
# golang images do not download a newer toolchain (GOTOOLCHAIN=local).
ARG GO_VERSION=1.26

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
ARG TARGETOS
ARG TARGETARCH
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download
COPY . .
ARG VERSION=dev
ARG COMMIT=unknown
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
    go build -trimpath \
      -ldflags "-s -w -X main.version=${VERSION} -X main.commit=${COMMIT}" \
      -o /out/kafka-connector .

# distroless/static holds CA certificates, time zones and a nonroot user
# (65532), and nothing else: no shell, no package manager.
FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
ARG COMMIT=unknown
LABEL org.opencontainers.image.title="kafka-connector" \
      org.opencontainers.image.description="Feeds OpenFaaS functions from Kafka topics" \
      org.opencontainers.image.source="https://github.com/kafka-connector/kafka-connector" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${COMMIT}"
COPY --from=build /out/kafka-connector /kafka-connector
# Numeric, so that Kubernetes can check runAsNonRoot against it.
USER 65532:65532
# /healthz, /readyz and /metrics (http_addr).
EXPOSE 8081
ENTRYPOINT ["/kafka-connector"]
