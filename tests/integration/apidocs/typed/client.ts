// The typed client surface the generated maps are made for (declarations only).
export type EventMap = Record<string, { payload: unknown; ack: unknown }>;

export interface TypedClient<C extends EventMap, S extends Record<string, unknown>> {
  emit<E extends keyof C & string>(event: E, payload: C[E]["payload"]): void;
  call<E extends keyof C & string>(event: E, payload: C[E]["payload"]): Promise<C[E]["ack"]>;
  on<E extends keyof S & string>(event: E, handler: (payload: S[E]) => void): void;
}

export declare function connect<C extends EventMap, S extends Record<string, unknown>>(
  url: string,
): TypedClient<C, S>;
