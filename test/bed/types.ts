/** How tests and scripts reach one host of the bed. */
export interface BedHost {
  name: string;
  kind: "systemd" | "light";
  address: string;
  port: number;
  user: string;
  /** The host's public key, to pin. */
  hostKey: string;
}
