package ops

import (
	"context"
	"fmt"
	"strconv"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	inventoryv1 "github.com/ordersaga/ordersaga/gen/inventory/v1"
	orderv1 "github.com/ordersaga/ordersaga/gen/order/v1"
	"github.com/ordersaga/ordersaga/pkg/auth"
	"github.com/ordersaga/ordersaga/pkg/server"
)

// dialAPI connects to a service's gRPC API as the global flags say: TLS when -tls or -tls-ca
// is given, and the bearer token of -token with every call.
func (c *cli) dialAPI(addr string) (*grpc.ClientConn, error) {
	creds := insecure.NewCredentials()
	secure := c.cfg.TLS || c.cfg.TLSCAFile != ""
	if secure {
		cfg, err := server.ClientTLS(c.cfg.TLSCAFile)
		if err != nil {
			return nil, err
		}
		creds = credentials.NewTLS(cfg)
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(creds)}
	if c.cfg.Token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(auth.Bearer{Token: c.cfg.Token, Insecure: !secure}))
	}
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", addr, err)
	}
	return conn, nil
}

func (c *cli) printProto(m proto.Message) error {
	b, err := protojson.MarshalOptions{Multiline: true, UseProtoNames: true, EmitUnpopulated: true}.Marshal(m)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(c.stdout, string(b))
	return err
}

func (c *cli) orderGet(ctx context.Context, args []string) error {
	pos, err := c.parse(newFlagSet("order get", c.stderr), args, 1, "one order id")
	if err != nil {
		return err
	}
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	conn, err := c.dialAPI(c.cfg.OrderAddr)
	if err != nil {
		return err
	}
	defer conn.Close()
	resp, err := orderv1.NewOrderServiceClient(conn).GetOrder(ctx, &orderv1.GetOrderRequest{OrderId: pos[0]})
	if err != nil {
		return err
	}
	return c.printProto(resp.GetOrder())
}

func (c *cli) stockGet(ctx context.Context, args []string) error {
	pos, err := c.parse(newFlagSet("stock get", c.stderr), args, 1, "one product id")
	if err != nil {
		return err
	}
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	conn, err := c.dialAPI(c.cfg.InventoryAddr)
	if err != nil {
		return err
	}
	defer conn.Close()
	resp, err := inventoryv1.NewInventoryServiceClient(conn).GetStock(ctx, &inventoryv1.GetStockRequest{ProductId: pos[0]})
	if err != nil {
		return err
	}
	return c.printProto(resp.GetStock())
}

func (c *cli) stockSet(ctx context.Context, args []string) error {
	pos, err := c.parse(newFlagSet("stock set", c.stderr), args, 2, "a product id and a quantity")
	if err != nil {
		return err
	}
	quantity, err := strconv.ParseInt(pos[1], 10, 64)
	if err != nil {
		return fmt.Errorf("%w: quantity %q is not an integer", errUsage, pos[1])
	}
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	conn, err := c.dialAPI(c.cfg.InventoryAddr)
	if err != nil {
		return err
	}
	defer conn.Close()
	resp, err := inventoryv1.NewInventoryServiceClient(conn).SetStock(ctx, &inventoryv1.SetStockRequest{ProductId: pos[0], Quantity: quantity})
	if err != nil {
		return err
	}
	return c.printProto(resp.GetStock())
}
