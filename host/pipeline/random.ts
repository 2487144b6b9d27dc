/** A uniform 32-bit value for the route core's weighted and load-balancing picks. */
export function random32(): number {
  return (Math.random() * 0x100000000) >>> 0;
}
