import { PROBLEMS } from "../../src/lib/problems";
import { ConflictError, InputError } from "../../src/lib/errors";

describe("problem codes", () => {
  test("an error's status is its code's", () => {
    expect(new ConflictError("owner_inactive", "x").status).toBe(PROBLEMS.owner_inactive);
    expect(new InputError("range_inverted", "x").status).toBe(PROBLEMS.range_inverted);
  });
});
