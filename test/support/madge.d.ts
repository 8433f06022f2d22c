// The part of madge's API the architecture test uses (madge ships no types).
declare module "madge" {
  interface MadgeResult {
    obj(): Record<string, string[]>;
    circular(): string[][];
  }
  function madge(path: string, config?: { fileExtensions?: string[]; tsConfig?: string; excludeRegExp?: RegExp[] }): Promise<MadgeResult>;
  export default madge;
}
