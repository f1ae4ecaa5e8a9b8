# syntax=docker/dockerfile:1
# transferd: a static binary on a distroless base, run as non-root with a
# read-only root filesystem. Base images are build arguments so that the
# image can also be smoke-built where registries are unreachable (e.g.
# --build-arg RUNTIME_IMAGE=scratch with a binary built on the host).
ARG BUILD_IMAGE=golang:1.26-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/static-debian12:nonroot

FROM ${BUILD_IMAGE} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# CGO off: the SQLite driver is pure Go, so the binary needs no libc.
RUN CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build -trimpath -ldflags="-s -w" -o /out/transferd ./cmd/transferd \
 && CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build -trimpath -ldflags="-s -w" -o /out/pbxsim ./cmd/pbxsim \
 && mkdir -p /out/data

FROM ${RUNTIME_IMAGE}
COPY --from=build /out/transferd /out/pbxsim /usr/local/bin/
# The data directory for the embedded store; mount a volume here.
COPY --from=build --chown=65532:65532 /out/data /data
ENV TRANSFERD_LISTEN_ADDR=:8080 \
    TRANSFERD_DATA_DIR=/data
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/transferd"]
