import { connect } from "socketspec-client";
import type { ClientEvents, ServerEvents } from "./app";

export async function chat(): Promise<string> {
  const client = await connect<ClientEvents, ServerEvents>("ws://localhost:8000/ws");
  const sent = await client.call("send_message", { room: "general", text: "hi", mood: "angry" }); // tsc-error: Type '"angry"' is not assignable to type 'Mood | undefined'
  await client.call("send_message", { room: 7, text: "hi" }); // tsc-error: Type 'number' is not assignable to type 'string'
  // typing's handler returns nothing: the server sends no __ack__, so there is nothing to await.
  await client.call("typing", {}); // tsc-error: '"typing"' is not assignable to parameter of type '"send_message"'
  return sent.id; // tsc-error: Type 'number' is not assignable to type 'string'
}
