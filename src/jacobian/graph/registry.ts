/**
 * The one table of layer rules: every layer class of tfjs-layers, with either the builder of its
 * rule (forward pass, transpose, linearisation and, where it is curved, the second-order jet, side
 * by side in its family's file) or the reason the graph does not cover it. The table's type names
 * every class of {@link LAYER_CLASSES}, so a class left out is a compile error; tests/graph.test.ts
 * checks that list against the classes tfjs-layers registers, and the Jacobians guide's list of
 * covered layers is generated from this table ({@link coverageMarkdown}).
 *
 * Two changes of layout apply around any rule (`layout.ts`): a channels-first layer runs its
 * channels-last rule through transposes, and an elementwise merge whose inputs broadcast runs its
 * equal-shape rule on broadcast inputs.
 *
 * @module
 */
import { ACTIVATION_LAYER_RULES } from './activation.js';
import { LINEAR_LAYER_RULES } from './conv.js';
import { broadcastingMergeRule, broadcasts, channelAxis, channelsFirstRule, timeDistributedRule } from './layout.js';
import { POOLING_RULES } from './pool.js';
import { RECURRENT_RULES } from './recurrent.js';
import { LAYER_CLASSES, NotCompilable } from './rule.js';
import type { FamilyRules, Layer, LayerClass, Rule, RuleBuilder, RuleContext } from './rule.js';
import { MERGES, STRUCTURE_RULES } from './structure.js';

const RECURRENT = 'a recurrent layer not written yet (SimpleRNN, GRU, LSTM and Bidirectional are covered)';

/** The classes the graph does not cover, and why (the plan and the `UnsupportedModelError` say it). */
const UNCOVERED = {
  RNN: RECURRENT,
  ConvLSTM2D: RECURRENT,
  Embedding: 'an Embedding reads integer indices, an input with no geometry: measure from its output with splitAt',
  Masking: 'Masking is not covered (masks are not carried through the graph)',
  Conv3D: '3-D convolutions are not covered',
  Conv3DTranspose: '3-D convolutions are not covered',
  MaxPooling3D: '3-D pooling is not covered',
  AveragePooling3D: '3-D pooling is not covered',
  CategoryEncoding: 'a preprocessing layer of integer inputs',
  CenterCrop: 'preprocessing layers are not covered',
  Resizing: 'preprocessing layers are not covered',
  RandomWidth: 'preprocessing layers are not covered',
  SimpleRNNCell: 'a cell, used inside a recurrent layer',
  GRUCell: 'a cell, used inside a recurrent layer',
  LSTMCell: 'a cell, used inside a recurrent layer',
  ConvLSTM2DCell: 'a cell, used inside a recurrent layer',
  StackedRNNCells: 'a cell, used inside a recurrent layer',
  InputLayer: "a model's input, never a layer on the compiled path",
} satisfies Partial<Record<LayerClass, string>>;

/** Wrappers of another layer, whose rule they are made from. */
const WRAPPERS = {
  TimeDistributed: (ctx) => timeDistributedRule(ctx, (inner) => ruleFor(inner, (l) => { throw new NotCompilable(`model '${l.name}' inside TimeDistributed`); })),
} satisfies FamilyRules;

/** A model used as a layer: compiled as a program of its own (see `compile.ts`). */
const NESTED = { Functional: 'nested', Sequential: 'nested', Model: 'nested' } as const satisfies Partial<Record<LayerClass, 'nested'>>;

/** Every layer class: its rule's builder, 'nested' (a model used as a layer) or why it is not covered. */
export const RULES: { readonly [K in LayerClass]: RuleBuilder | 'nested' | string } = {
  ...LINEAR_LAYER_RULES,
  ...ACTIVATION_LAYER_RULES,
  ...POOLING_RULES,
  ...STRUCTURE_RULES,
  ...RECURRENT_RULES,
  ...WRAPPERS,
  ...UNCOVERED,
  ...NESTED,
};

/** The families of the table, to check that no class is in two of them. @internal */
export const FAMILIES: Record<string, readonly string[]> = {
  linear: Object.keys(LINEAR_LAYER_RULES),
  activation: Object.keys(ACTIVATION_LAYER_RULES),
  pooling: Object.keys(POOLING_RULES),
  structure: Object.keys(STRUCTURE_RULES),
  recurrent: Object.keys(RECURRENT_RULES),
  wrappers: Object.keys(WRAPPERS),
  uncovered: Object.keys(UNCOVERED),
  nested: Object.keys(NESTED),
};

/** The rule for one layer; `nested` compiles a model used as a layer. @throws NotCompilable */
export function ruleFor(ctx: RuleContext, nested: (layer: Layer) => Rule): Rule {
  const { layer, inShapes, outShape } = ctx;
  const cls = layer.getClassName();
  if (Array.isArray((layer as unknown as { layers?: unknown }).layers)) return nested(layer);
  const entry = (RULES as Record<string, RuleBuilder | string | undefined>)[cls];
  if (entry === undefined) throw new NotCompilable(`layer '${layer.name}' (${cls}, a custom layer)`);
  if (typeof entry === 'string') throw new NotCompilable(`layer '${layer.name}' (${cls}: ${entry})`);
  const build: RuleBuilder = MERGES.has(cls) && broadcasts(inShapes, outShape) ? (c) => broadcastingMergeRule(c, entry) : entry;
  const axis = channelAxis(layer, inShapes[0] ?? outShape);
  return axis === undefined ? build(ctx) : channelsFirstRule(ctx, axis, build);
}

/** The covered classes and the others with their reasons, as the Jacobians guide lists them. */
export function coverageMarkdown(): string {
  const covered = LAYER_CLASSES.filter((c) => typeof RULES[c] === 'function').map((c) => `\`${c}\``);
  const nested = LAYER_CLASSES.filter((c) => RULES[c] === 'nested').map((c) => `\`${c}\``);
  const reasons = new Map<string, string[]>();
  for (const c of LAYER_CLASSES) {
    const r = RULES[c];
    if (typeof r !== 'string' || r === 'nested') continue;
    reasons.set(r, [...(reasons.get(r) ?? []), `\`${c}\``]);
  }
  return [
    `Covered (${covered.length} classes): ${covered.join(', ')}; and models used as layers (${nested.join(', ')}).`,
    '',
    'Not covered (the plan falls back to `tf.grad` and names the layer):',
    '',
    ...[...reasons].map(([why, classes]) => `- ${classes.join(', ')}: ${why}.`),
    '- a custom layer (a class of your own): the graph cannot know its derivatives.',
  ].join('\n');
}
