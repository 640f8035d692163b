# syntax=docker/dockerfile:1
# breachd in a container: static binaries, no shell, not root.
#
#   docker build -t breachd .
#   docker run -d -p 7355:7355 -v breachd-data:/data -v $PWD/tls:/etc/breachd/tls:ro breachd
#
# TLS is required off loopback: mount tls.crt and tls.key (and ca.crt for
# the health check) in /etc/breachd/tls. Create API keys with
#   docker run --rm -v breachd-data:/data breachd keys create --data /data --name NAME --scopes check
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/ ./cmd/breachd ./cmd/breachctl

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/breachd /out/breachctl /usr/local/bin/
VOLUME /data
ENV BREACHD_DATA=/data \
    BREACHD_ADDR=0.0.0.0:7355 \
    BREACHD_TLS_CERT=/etc/breachd/tls/tls.crt \
    BREACHD_TLS_KEY=/etc/breachd/tls/tls.key \
    BREACHD_METRICS_ADDR=127.0.0.1:9355 \
    BREACHCTL_ADDR=localhost:7355 \
    BREACHCTL_CA=/etc/breachd/tls/ca.crt
EXPOSE 7355
USER nonroot:nonroot
# The probe asks /readyz on the metrics listener (loopback, inside the
# container): it works with mutual TLS too, where a gRPC health check would
# need a client certificate.
HEALTHCHECK --interval=10s --timeout=3s --start-period=2m CMD ["/usr/local/bin/breachctl", "health", "--readyz", "http://127.0.0.1:9355/readyz"]
ENTRYPOINT ["/usr/local/bin/breachd"]
CMD ["serve"]
