import { connect } from "./client";
import type { ClientEvents, ServerEvents } from "./app";

export async function chat(): Promise<string> {
  const client = connect<ClientEvents, ServerEvents>("ws://localhost:8000/ws");
  const sent = await client.call("send_message", { room: "general", text: "hi", mood: "angry" });
  return sent.id;
}
