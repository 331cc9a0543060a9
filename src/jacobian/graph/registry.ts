/**
 * The one table of layer rules: each layer class of tfjs-layers that infogeo's graph covers, and the
 * family file whose rule (forward pass, transpose, linearisation, side by side) it uses.
 *
 * @module
 */
import { activationLayerRule } from './activation.js';
import { linearLayerRule } from './conv.js';
import { poolingRule } from './pool.js';
import { NotCompilable } from './rule.js';
import type { Layer, Rule, RuleContext } from './rule.js';
import { structureRule } from './structure.js';

const LINEAR_LAYERS = new Set(['Dense', 'Conv1D', 'Conv2D', 'DepthwiseConv2D', 'SeparableConv2D', 'Conv2DTranspose']);

/** The rule for one layer; `nested` compiles a model used as a layer. @throws NotCompilable */
export function ruleFor(ctx: RuleContext, nested: (layer: Layer) => Rule): Rule {
  const { layer } = ctx;
  const cls = layer.getClassName();
  if (Array.isArray((layer as unknown as { layers?: unknown }).layers)) return nested(layer);
  if (LINEAR_LAYERS.has(cls)) return linearLayerRule(ctx);
  const rule = activationLayerRule(layer, ctx.outShape.length) ?? poolingRule(ctx) ?? structureRule(ctx);
  if (rule === undefined) throw new NotCompilable(`layer '${layer.name}' (${cls})`);
  return rule;
}
