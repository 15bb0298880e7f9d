// The README's REST flow from TypeScript: a client generated from the REST facade's OpenAPI 3
// document (openapi-typescript writes src/ordersaga.d.ts, openapi-fetch calls the routes it
// types). Run against a running order-service:
//
//	ORDERSAGA_REST_URL=http://localhost:3001 npm start
//
// It places an order, reads it, lists the customer's orders, reuses the order's request_id with
// other items (409) and sends an order without items (400 naming the field), and exits 1 on
// the first answer that is not the one the API documents.
import { randomUUID } from "node:crypto";
import createClient from "openapi-fetch";

import type { components, paths } from "./ordersaga.js";

type CreateOrderRequest = components["schemas"]["CreateOrderRequest"];
type Status = components["schemas"]["Status"];

const baseUrl = process.env.ORDERSAGA_REST_URL ?? "http://localhost:3001";
const client = createClient<paths>({ baseUrl });

// The README's order: the demo product that a fresh start seeds with ample stock.
const customer = randomUUID();
const order: CreateOrderRequest = {
  customer_id: customer,
  payment_method: "credit_card",
  items: [{ product_id: "00000000-0000-0000-0000-000000000001", quantity: 2, unit_price: "49.90" }],
  request_id: `typescript-${randomUUID()}`,
};

function fail(what: string, status: number, body: unknown): never {
  console.error(`${what}: HTTP ${status} ${JSON.stringify(body)}`);
  process.exit(1);
}

// An error body is a google.rpc.Status: its message names the field at fault.
function expectError(what: string, got: { response: Response; error?: Status }, status: number, field: string): void {
  if (got.response.status !== status || !got.error?.message?.includes(field)) {
    fail(`${what}: want ${status} naming ${field}`, got.response.status, got.error);
  }
  console.log(`${what}: ${status} ${got.error.message}`);
}

async function main(): Promise<void> {
  const created = await client.POST("/v1/orders", { body: order });
  if (!created.data) fail("create", created.response.status, created.error);
  const id = created.data.order.order_id;
  console.log(`created ${id}: ${created.data.order.status}, total ${created.data.order.total}`);

  const got = await client.GET("/v1/orders/{order_id}", { params: { path: { order_id: id } } });
  if (!got.data) fail("get", got.response.status, got.error);
  console.log(`got ${id}: ${got.data.order.status}, ${got.data.order.history.length} status change(s)`);

  const listed = await client.GET("/v1/orders", { params: { query: { customer_id: customer, page_size: 10 } } });
  if (!listed.data) fail("list", listed.response.status, listed.error);
  if (!listed.data.orders.some((o) => o.order_id === id)) fail("list: the order is missing", listed.response.status, listed.data);
  console.log(`listed ${listed.data.orders.length} order(s) of customer ${customer}`);

  const again = await client.POST("/v1/orders", { body: order });
  if (again.data?.order.order_id !== id) fail("the same request again: want the same order", again.response.status, again.data ?? again.error);
  console.log(`the same request again: the same order ${id}`);

  const reused = await client.POST("/v1/orders", {
    body: { ...order, items: [{ product_id: "00000000-0000-0000-0000-000000000001", quantity: 3, unit_price: "49.90" }] },
  });
  expectError("request_id reused with other items", reused, 409, "request_id");

  const empty = await client.POST("/v1/orders", { body: { ...order, items: [], request_id: "" } });
  expectError("no items", empty, 400, "items");
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
