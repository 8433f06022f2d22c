import { extendZodWithOpenApi } from "@asteasolutions/zod-to-openapi";
import { z } from "zod";

// WARNING: must run before any schema calls .openapi(); every module that defines schemas imports z from here.
extendZodWithOpenApi(z);

export { z };
