package auth

import "context"

// Bearer is a client's per-call credential: it sends token as "authorization: Bearer <token>".
// Use it with grpc.WithPerRPCCredentials.
type Bearer struct {
	Token string
	// Insecure allows sending the token over a connection without TLS, e.g. to a local
	// service in development. Without it, gRPC refuses such calls.
	Insecure bool
}

// GetRequestMetadata implements credentials.PerRPCCredentials.
func (b Bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.Token}, nil
}

// RequireTransportSecurity implements credentials.PerRPCCredentials.
func (b Bearer) RequireTransportSecurity() bool { return !b.Insecure }
