// Publishing a new policy version: compiled (and its tests held to the budget), signed, loaded,
// held to the budget on recent decisions, stored with its Chron record, mirrored for OPA tooling.
// A refusal is recorded in Chron too.
import { ClaiimError, UnprocessableError } from "../lib/errors";
import { newEvent } from "../chron/record";
import { contentDigest, fileSha256, parseManifest, revisionOf, writeBundle } from "./bundle";
import type { BundleSigner } from "./bundle-signing";
import type { PolicyWarning } from "./compiler";
import { instantiate } from "./policy-engine";
import { BUNDLE_NAME, versionView, type PolicyVersionView, type PublishRequest } from "./policy-views";
import type { PolicyActivation, PolicyParts } from "./policy-activation";
import { type Actor, actorName } from "../shared/principal";

/** Publishing. Its callers serialise it with every other policy change (PolicyService). */
export class PolicyPublishing {
  constructor(
    private readonly p: PolicyParts,
    private readonly signer: BundleSigner,
    private readonly activation: PolicyActivation,
  ) {}

  async publish(req: PublishRequest, actor: Actor): Promise<PolicyVersionView & { warnings: PolicyWarning[] }> {
    const { store, engine, record, logger, budget } = this.p;
    const refused = async (err: unknown): Promise<never> => {
      if (err instanceof ClaiimError) {
        await record([
          newEvent({
            type: "policy.publish_refused",
            actor,
            subject: { type: "policy", id: BUNDLE_NAME, name: BUNDLE_NAME },
            reason: err.message,
            before: null,
            after: { code: err.code, message: req.message, files: Object.keys(req.files).sort() },
          }),
        ]);
      }
      throw err;
    };
    let files;
    let warnings: PolicyWarning[];
    try {
      ({ files, warnings } = await this.p.compiler.compile(
        req.files,
        budget
          ? async (_built, tests) => {
              if (tests) await budget.tests(tests);
            }
          : undefined,
      ));
    } catch (err) {
      return refused(err);
    }
    const version = (await store.latestVersion()) + 1;
    const digest = contentDigest(files);
    const revision = revisionOf(version, digest);
    files.set(".manifest", Buffer.from(JSON.stringify({ ...parseManifest(files), revision })));
    const bundle = await writeBundle(await this.signer.sign(files));
    const createdAt = new Date();
    const createdBy = actorName(actor);
    const parent = engine.active()?.version ?? null;
    const stored = { version, parent, revision, digest, fileSha256: fileSha256(bundle), bundle, sources: req.files, message: req.message, createdBy, createdAt };
    // Load before storing: a bundle that compiles but cannot run is refused like one that does not compile.
    const loaded = await instantiate(stored, createdAt, this.p.verify, engine.pool).catch((err: Error) => {
      throw new UnprocessableError("policy_load_failed", err.message);
    });
    try {
      await budget?.recent(loaded);
    } catch (err) {
      loaded.release();
      return refused(err);
    }
    await record(
      [
        newEvent({
          type: "policy.published",
          actor,
          subject: { type: "policy", id: String(version), name: revision },
          reason: req.message,
          before: null,
          after: { version, revision, digest, file_sha256: stored.fileSha256, files: Object.keys(req.files).sort(), warnings: warnings.map((w) => `${w.file}: ${w.code}`) },
        }),
      ],
      (tx) => store.insert(stored, tx),
    );
    await this.p.mirror.write(version, bundle);
    logger.info("policy published", { version, revision, actor });
    if (req.activate) await this.activation.activateLoaded(loaded, actor);
    else loaded.release();
    return { ...versionView(stored, engine.active()?.version ?? null), warnings };
  }
}
