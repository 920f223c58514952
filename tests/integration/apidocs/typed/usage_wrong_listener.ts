import { connect } from "socketspec-client";
import type { ClientEvents, ServerEvents } from "./app";

export async function chat(): Promise<void> {
  const client = await connect<ClientEvents, ServerEvents>("ws://localhost:8000/ws");
  client.on("new_message", (message) => {
    const count: number = message.text; // tsc-error: Type 'string' is not assignable to type 'number'
    console.log(count, message.sender); // tsc-error: Property 'sender' does not exist on type 'NewMessage'
  });
  client.once("new_message", (message: { room: number }) => console.log(message.room)); // tsc-error: is not assignable to parameter of type
  client.on("no_such_broadcast", () => undefined); // tsc-error: '"no_such_broadcast"' is not assignable
  client.on("disconnect", ({ code }) => code.toUpperCase()); // tsc-error: Property 'toUpperCase' does not exist on type 'number'
}
