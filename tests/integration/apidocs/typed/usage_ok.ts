import { connect } from "./client";
import type { ClientEvents, Namespaces, ServerEvents } from "./app";

export async function chat(): Promise<number> {
  const client = connect<ClientEvents, ServerEvents>("ws://localhost:8000/ws");
  const sent = await client.call("send_message", {
    room: "general",
    text: "hello",
    mood: "sad",
    attachments: [{ url: "https://example.com/a.png", kind: "image" }],
    reply_to: 3,
    meta: { anything: [1, "two"] },
  });
  client.emit("typing", { room: "general" });
  client.on("new_message", (message) => {
    const mood: "happy" | "sad" = message.mood;
    console.log(message.room, message.text, mood);
  });
  client.on("typing_seen", (payload) => console.log(Object.keys(payload)));
  const admin = connect<Namespaces["/admin"]["client"], Namespaces["/admin"]["server"]>("ws://x");
  const kicked: string[] = await admin.call("kick", { user: "mallory" });
  return sent.id + sent.delivered + kicked.length;
}
