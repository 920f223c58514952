import { connect } from "./client";
import type { ClientEvents, ServerEvents } from "./app";

export async function chat(): Promise<void> {
  const client = connect<ClientEvents, ServerEvents>("ws://localhost:8000/ws");
  await client.call("send_message", { room: "general", txt: "hello" });
}
