# One image per service: docker build --build-arg SERVICE=order .
FROM golang:1.26-alpine AS build
ARG SERVICE
WORKDIR /src
COPY go.mod go.sum ./
COPY gen/go.mod gen/go.sum ./gen/
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/service ./services/${SERVICE}/cmd/${SERVICE}

FROM alpine:3.22
RUN adduser -D -H -u 10001 app
USER app
COPY --from=build /out/service /usr/local/bin/service
ENTRYPOINT ["/usr/local/bin/service"]
