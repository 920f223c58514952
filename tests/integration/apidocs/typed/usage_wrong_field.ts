import { connect } from "socketspec-client";
import type { ClientEvents, ServerEvents } from "./app";

export async function chat(): Promise<void> {
  const client = await connect<ClientEvents, ServerEvents>("ws://localhost:8000/ws");
  await client.call("send_message", { room: "general", txt: "hello" }); // tsc-error: 'txt' does not exist in type 'SendMessage'
  client.emit("send_message", { room: "general", text: "hi", colour: "red" }); // tsc-error: 'colour' does not exist in type 'SendMessage'
  await client.call("send_message"); // tsc-error: Expected 2-3 arguments, but got 1
  client.emit("no_such_event", {}); // tsc-error: '"no_such_event"' is not assignable
}
