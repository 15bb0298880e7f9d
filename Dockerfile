# One image per service, static and non-root on distroless:
#   docker build --build-arg SERVICE=order -t ordersaga/order .
# SERVICE is one of order, payment, inventory, shipping.
FROM golang:1.26-alpine AS build
ARG SERVICE
RUN case "$SERVICE" in order|payment|inventory|shipping) ;; \
      *) echo "build with --build-arg SERVICE=order|payment|inventory|shipping" >&2; exit 1 ;; esac
WORKDIR /src
COPY go.mod go.sum ./
COPY gen/go.mod gen/go.sum ./gen/
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/service ./services/${SERVICE}/cmd/${SERVICE}

# No shell and no package manager: container health checks go through the ops port from outside
# (Kubernetes probes), not a command inside the image.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/service /service
USER 65532:65532
ENTRYPOINT ["/service"]
