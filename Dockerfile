# syntax=docker/dockerfile:1
# Multi-stage: build a static binary, ship it on distroless as a non-root user.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/isthmus ./cmd/isthmus

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/isthmus /usr/local/bin/isthmus
USER nonroot:nonroot
# STUN/TURN over UDP and TCP, TURN over TLS, metrics, and the relay port range.
EXPOSE 3478/udp 3478/tcp 5349/tcp 9641/tcp 49152-65535/udp
# The relay's /readyz (200 while serving, 503 while draining) through the
# binary itself: the distroless image has no shell or curl. With another
# metrics address set ISTHMUS_HEALTH_URL.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["/usr/local/bin/isthmus", "health", "-q"]
ENTRYPOINT ["/usr/local/bin/isthmus"]
CMD ["relay", "--metrics", "0.0.0.0:9641"]
