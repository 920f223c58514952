// A correct use of the generated maps with the real client: every call below type-checks.
import { connect, Client, SocketSpecError } from "socketspec-client";
import type { AdminClientEvents, AdminServerEvents, ClientEvents, NewMessage, ServerEvents } from "./app";

export async function chat(): Promise<number> {
  const client = await connect<ClientEvents, ServerEvents>("ws://localhost:8000/ws");
  const sent = await client.call("send_message", {
    room: "general",
    text: "hello",
    mood: "sad",
    attachments: [{ url: "https://example.com/a.png", kind: "image" }],
    reply_to: 3,
    meta: { anything: [1, "two"] },
  }, { timeout: 5 });
  const total: number = sent.id + sent.delivered;
  client.emit("typing", { room: "general" });
  client.emit("typing");
  const render = (message: NewMessage) => {
    const mood: "happy" | "sad" = message.mood;
    console.log(message.room, message.text, mood);
  };
  client.on("new_message", render);
  client.once("new_message", (message, envelope) => console.log(message.text, envelope.pos));
  client.off("new_message", render);
  client.off("new_message");
  client.on("typing_seen", (payload) => console.log(Object.keys(payload)));
  // The client's own events keep their types.
  client.on("reconnect", (greeting) => console.log(greeting.conn_id, greeting.recovered));
  client.on("disconnect", ({ code }) => console.log(code + 1));
  client.on("close", ({ code }) => console.log(code.toLowerCase()));
  client.on("__error__", (error) => console.log(error.code, error.message));
  client.on("refreshed", ({ user_id }) => console.log(user_id));

  const admin: Client<AdminClientEvents, AdminServerEvents> = await connect<AdminClientEvents, AdminServerEvents>(
    "ws://localhost:8000/ws",
    { namespace: "/admin" },
  );
  const kicked: string[] = await admin.call("kick", { user: "mallory" });
  try {
    await admin.call("kick", { user: "eve" });
  } catch (error) {
    if (error instanceof SocketSpecError) console.log(error.code, error.details);
  }

  // Without type arguments the client takes any event, payload and ack, as plain JS does.
  const loose = await connect("ws://localhost:8000/ws");
  const reply = await loose.call("anything", { at: 1 });
  loose.emit("whatever");
  loose.on("said", (payload) => console.log(payload.n, payload.whatever));
  return total + kicked.length + reply.count;
}
