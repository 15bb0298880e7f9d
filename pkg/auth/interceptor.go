package auth

import (
	"context"
	"errors"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// openServices answer without a token: load balancers and grpcurl need them.
var openServices = []string{
	"/grpc.health.v1.Health/",
	"/grpc.reflection.v1.ServerReflection/",
	"/grpc.reflection.v1alpha.ServerReflection/",
}

func open(fullMethod string) bool {
	for _, prefix := range openServices {
		if strings.HasPrefix(fullMethod, prefix) {
			return true
		}
	}
	return false
}

// ServerOptions returns the interceptors (unary and stream) that check the bearer token of every
// call to a method outside health and reflection, and, when scope is not "", that the token
// grants scope. A call without a valid token ends UNAUTHENTICATED, one without the scope
// PERMISSION_DENIED; otherwise the handler finds the caller with FromContext.
func ServerOptions(v *Verifier, scope string) []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
			if open(info.FullMethod) {
				return handler(ctx, req)
			}
			ctx, err := v.authorize(ctx, scope)
			if err != nil {
				return nil, err
			}
			return handler(ctx, req)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
			if open(info.FullMethod) {
				return handler(srv, ss)
			}
			ctx, err := v.authorize(ss.Context(), scope)
			if err != nil {
				return err
			}
			return handler(srv, &stream{ServerStream: ss, ctx: ctx})
		}),
	}
}

type stream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *stream) Context() context.Context { return s.ctx }

// authorize verifies the call's token and returns ctx carrying its caller.
func (v *Verifier) authorize(ctx context.Context, scope string) (context.Context, error) {
	raw, err := bearer(ctx)
	if err != nil {
		return nil, status.Error(codes.Unauthenticated, err.Error())
	}
	p, err := v.Verify(raw)
	if err != nil {
		return nil, status.Error(codes.Unauthenticated, err.Error())
	}
	if scope != "" && !p.HasScope(scope) {
		return nil, status.Errorf(codes.PermissionDenied, "the token does not grant scope %s", scope)
	}
	return NewContext(ctx, p), nil
}

// bearer returns the token of the call's one authorization header "Bearer <token>".
func bearer(ctx context.Context) (string, error) {
	values := metadata.ValueFromIncomingContext(ctx, "authorization")
	switch len(values) {
	case 0:
		return "", ErrNoToken
	case 1:
	default:
		// Two tokens (the REST facade forwards Grpc-Metadata-Authorization as well): refuse
		// rather than guess which one counts.
		return "", errors.New("more than one authorization header")
	}
	scheme, token, ok := strings.Cut(values[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
		return "", errors.New(`authorization must be "Bearer <token>"`)
	}
	return strings.TrimSpace(token), nil
}
